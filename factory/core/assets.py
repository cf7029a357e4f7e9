"""Where the shipped data folders (prompts/, filters/) live, installed or in a checkout."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent.parent  # the `factory` package


def shipped_dir(name: str) -> Path:
    """`prompts` or `filters`: the repo's top-level folder in a checkout, else the packaged copy."""
    checkout = _PACKAGE.parent / name
    if checkout.is_dir():
        return checkout
    return _PACKAGE / "_shipped" / name
