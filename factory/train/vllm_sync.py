"""Keep a vLLM engine's weights in step with the policy being trained (GRPO rollouts).

vLLM runs the model in its own worker process, so the trainer writes the new weights to a
safetensors file and asks every worker, by name through `collective_rpc`, to load them.
For the small models this runner is for, a file is simpler and as fast as NCCL would be.
"""

from __future__ import annotations


class WeightSync:
    """Mixed into vLLM's worker class via `LLM(worker_extension_cls=...)`."""

    def load_weights_from(self, path: str) -> int:
        from safetensors.torch import load_file

        weights = load_file(path)
        # In-place reload: it re-runs the post-load processing (e.g. the CPU build repacks
        # linear weights), which a plain `model.load_weights` would write past.
        self.reload_weights(weights_iterator=iter(weights.items()), is_checkpoint_format=True)
        return len(weights)
