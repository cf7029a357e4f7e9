"""The one exception type that reaches the user as a single clear line."""


class FactoryError(Exception):
    """Bad input or a refused operation: what is wrong, where, and how to fix it.

    The CLI prints the message in one red line and exits non-zero; library code raises
    it instead of asserting so that no traceback ever reaches a user for bad input.
    """

    exit_code = 2
