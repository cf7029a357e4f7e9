"""Text normalization and hashing shared by shard writing and dedup."""

from __future__ import annotations

import hashlib
import re
import unicodedata

_SPACE = re.compile(r"\s+")


def normalize(text: str | None) -> str:
    """NFKC, case-folded, whitespace collapsed: two texts that differ only so are duplicates."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text or "").casefold()).strip()


def text_hash(text: str | None) -> int:
    """A signed 64-bit hash of the normalized text (fits DuckDB BIGINT; joins are fast)."""
    digest = hashlib.blake2b(normalize(text).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)
