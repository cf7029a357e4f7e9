"""Reading the user's text and YAML files: a bad byte or bad YAML is one line naming the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from factory.core.errors import FactoryError


def read_text_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise FactoryError(f"{path}: not UTF-8 text (bad byte at offset {e.start}); save it as UTF-8") from None
    except OSError as e:
        raise FactoryError(f"{path}: cannot read it ({e.strerror})") from None


def read_yaml_file(path: Path) -> Any:
    try:
        return yaml.safe_load(read_text_file(path))
    except yaml.YAMLError as e:
        raise FactoryError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None


def parse_yaml_value(value: str, where: str) -> Any:
    """A value given on the command line (`--set k=v`, `--engine-arg k=v`), read as YAML."""
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError as e:
        raise FactoryError(f"{where}: '{value}' is not a valid YAML value ({str(e).splitlines()[0]}); "
                           "quote it if it is text") from None
