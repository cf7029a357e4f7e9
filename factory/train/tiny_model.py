"""Build a tiny Qwen2-architecture causal LM with a character-level tokenizer, from a seed.

It needs no download, loads in transformers and in vLLM (CPU build), and is what the tests
and the demo use until a trained checkpoint ships. Two facts shape it:
- vLLM's CPU attention rejects head_dim 16, so heads are 64 wide (hidden 128, 2 heads).
- transformers 5 loads `Qwen2Tokenizer` for a qwen2 model and rebuilds it from vocab and
  merges, dropping a WordLevel tokenizer's pre-tokenizer and decoder; a byte-level BPE with
  no merges is character level and survives that rebuild.
"""

from __future__ import annotations

import json
from pathlib import Path

# The characters the arithmetic tasks, the templates and the `<think>` tags use; every
# other character still encodes through the 256 byte-level symbols.
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# ChatML, the format Qwen2 chat models use, so chat-mode rendering is exercised for real.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_tokenizer(out_dir: Path) -> int:
    """Write a character-level byte-level BPE tokenizer to `out_dir`; return its vocab size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(SPECIAL_TOKENS)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        unk_token=None,
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(str(out_dir))
    # Qwen2Tokenizer reads vocab.json + merges.txt; write them so the rebuild is lossless.
    (out_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (out_dir / "merges.txt").write_text("#version: 0.2\n")
    return len(vocab) + len(SPECIAL_TOKENS)


def build_tiny_model(
    out_dir: str | Path,
    seed: int = 0,
    hidden_size: int = 128,
    num_layers: int = 4,
    num_heads: int = 2,
    intermediate_size: int = 512,
    max_position_embeddings: int = 2048,
) -> Path:
    """Create a randomly initialised tiny Qwen2 model + tokenizer in `out_dir` and return it."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocab_size = build_tokenizer(out)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(out))
    config = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        head_dim=hidden_size // num_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tok.convert_tokens_to_ids("<|endoftext|>"),
        torch_dtype="float32",
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.save_pretrained(str(out))
    return out
