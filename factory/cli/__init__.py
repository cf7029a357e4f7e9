"""The `factory` command line. `factory.cli:main` is the console script; `python -m factory.cli` runs it."""

from factory.cli.commands import EXIT_BAD_INPUT, EXIT_BUSY, EXIT_INTERRUPTED, EXIT_PARTIAL, app, main

__all__ = ["EXIT_BAD_INPUT", "EXIT_BUSY", "EXIT_INTERRUPTED", "EXIT_PARTIAL", "app", "main"]
