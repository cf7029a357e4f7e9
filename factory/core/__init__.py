"""The record type and what every stage stands on: shards, settings, errors, the registry, locks."""
