"""The rejection-sampling chain: its steps, dedup, language detection and the funnel of what each step kept."""
