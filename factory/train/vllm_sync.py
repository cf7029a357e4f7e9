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
        self._refresh_tied_head()
        return len(weights)

    def _refresh_tied_head(self) -> None:
        """A tied output head reads the embedding matrix through its own prepared copy (the CPU
        build packs it for oneDNN when the model loads). The checkpoint names that matrix once, as
        the embedding, so a reload refreshes the embedding and leaves the head's copy stale: the
        engine would keep sampling with the old head. Prepare the head again from the new matrix."""
        model = self.model_runner.model
        head = getattr(model, "lm_head", None)
        embed = getattr(getattr(model, "model", None), "embed_tokens", None)
        method = getattr(head, "quant_method", None)
        if (head is not None and embed is not None and getattr(head, "weight", None) is embed.weight
                and method is not None):
            method.process_weights_after_loading(head)
