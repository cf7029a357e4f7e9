"""Templates, the one prompter that renders them (chat or base, prefill), and the output formats that parse answers."""
