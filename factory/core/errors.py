"""The one exception type that reaches the user as a single clear line, and secret redaction for error text."""

import re


class FactoryError(Exception):
    """Bad input or a refused operation: what is wrong, where, and how to fix it.

    The CLI prints the message in one red line and exits non-zero; library code raises
    it instead of asserting so that no traceback ever reaches a user for bad input.
    """

    exit_code = 2


class RunBusy(FactoryError):
    """The run is held by another process: nothing is wrong, try again later (EX_TEMPFAIL)."""

    exit_code = 75


# Credentials a server or library may echo back in an error: they must never reach shards, logs or output.
_SECRET_PATTERNS = [
    re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)(?:bearer\s+)?[^\s\"',}]+"),
    re.compile(r"(?i)((?:x-)?api[-_]?key[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"()\b(?:sk|sk-proj|rk)-[A-Za-z0-9_-]{16,}"),
    re.compile(r"()\bhf_[A-Za-z0-9]{20,}"),
]


def redact(text: str, *secrets: str | None) -> str:
    """`text` with known key patterns, Authorization/api-key values and the given secrets masked."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + "[redacted]", text)
    return text
