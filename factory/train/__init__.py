"""A small SFT and GRPO runner on torch + transformers; each script reads top to bottom."""
