"""Settings: dataclass fields with a help string, checked the same way wherever they come from.

Every settings dataclass (filter steps, training configs, generation, sampling, backend and Ray
options) declares its fields with `setting(default, help)`; the field's type hint is the whole
contract. `check` reads values from YAML (chains, recipes, `--config`) or `--set` against those
hints with pydantic, so a value means the same in every file: YAML reads `1e-1` as a string, and
it is 0.1 for a float field everywhere; a bool is true or false, never 1 or "yes", and never
counts as a number; a Literal lists its choices. Every refusal is one line naming where, the
setting, the value and what is expected. `build` checks, instantiates and runs `validate()`,
which raises FactoryError in every settings class.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BeforeValidator, ConfigDict, StrictBool, TypeAdapter, ValidationError

from factory.core.errors import FactoryError


def setting(default: Any = dataclasses.MISSING, help: str = "", *, flags: tuple[str, ...] = (),
            key: str | None = None, options: type | None = None) -> Any:
    """One settings field: its default and help, and optionally
    flags: the command-line names (first one canonical, short aliases and old names after it);
    key: the name in recipes and the flag's parameter, when the field's own name reads worse there;
    options: for a dict field, the settings dataclass that names its keys (backend or Ray options
    are handed on as keyword options, so they stay a dict)."""
    metadata = {"help": help, "flags": tuple(flags), "key": key, "options": options}
    if isinstance(default, (list, dict)):  # a fresh copy per instance, as dataclasses demand
        return dataclasses.field(default_factory=lambda d=default: type(d)(d), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def help_of(f: dataclasses.Field) -> str:
    return f.metadata.get("help", "")


def default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def type_name(annotation: Any) -> str:
    """What a setting expects, in words: 'a number', 'one of grpo, dapo', 'a whole number or null'."""
    origin = typing.get_origin(annotation)
    if is_union(annotation):
        return " or ".join(type_name(a) for a in typing.get_args(annotation))
    if origin is typing.Literal:
        return "one of " + ", ".join(str(a) for a in typing.get_args(annotation))
    if origin is list:
        (inner,) = typing.get_args(annotation) or (Any,)
        return f"a list of {type_name(inner).removeprefix('a ')}s" if inner is not Any else "a list"
    if origin is dict:
        return "a mapping"
    return {bool: "true or false", int: "a whole number", float: "a number", str: "text", type(None): "null",
            Any: "any value"}.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _whole(value: Any) -> Any:
    """An int field takes whole numbers, also written as floats or text ("1e3" is a string to YAML)."""
    if isinstance(value, bool):
        raise ValueError("a bool is not a number")
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        return int(number) if number.is_integer() else value
    return value


def _number(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("a bool is not a number")
    return value


def _strict(annotation: Any) -> Any:
    """The hint as pydantic should read it: bools only true/false, and never taken for numbers."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is bool:
        return StrictBool
    if annotation is int:
        return Annotated[int, BeforeValidator(_whole)]
    if annotation is float:
        return Annotated[float, BeforeValidator(_number)]
    if is_union(annotation):
        return typing.Union[tuple(_strict(a) for a in args)]  # noqa: UP007  (built from a tuple at run time)
    if origin is list and args:
        return list[_strict(args[0])]
    if origin is dict and args:
        return dict[_strict(args[0]), _strict(args[1])]
    return annotation


@functools.cache
def _adapter(annotation: Any) -> TypeAdapter:
    # Numbers are accepted as text (a model or template named 7): YAML has no way to say "this is a string".
    return TypeAdapter(_strict(annotation), config=ConfigDict(coerce_numbers_to_str=True))


def check_value(annotation: Any, value: Any, name: str, where: str) -> Any:
    """The value converted to the hint's type, or the one-line refusal."""
    try:
        return _adapter(annotation).validate_python(value)
    except ValidationError:
        raise FactoryError(f"{where}: {name}={value!r} is not valid: expected {type_name(annotation)}") from None


def check(cls: type, values: Mapping[str, Any] | None, where: str) -> dict[str, Any]:
    """YAML or `--set` values for `cls`, converted to its field types; unknown names refused."""
    kinds = hints(cls)
    leaves = [Flat(f.name, (f.name,), f, kinds[f.name]) for f in dataclasses.fields(cls)]
    return check_flat(leaves, values, where)


def build(cls: type, values: Mapping[str, Any] | None, where: str) -> Any:
    """Check the values, make the object and run its `validate()`; every error names `where`."""
    return validated(cls(**check(cls, values, where)), where)


def validated(obj: Any, where: str) -> Any:
    """Run the object's `validate()`, if it has one, with `where` in front of its error."""
    validate = getattr(obj, "validate", None)
    if validate is not None:
        try:
            validate()
        except FactoryError as e:
            raise FactoryError(f"{where}: {e}") from None
    return obj


def describe(cls: type) -> str:
    """`name (type): help` for each setting, for listings such as `factory chains`."""
    kinds = hints(cls)
    parts = [f"{f.name} ({type_name(kinds[f.name])}): {help_of(f)}" for f in dataclasses.fields(cls)]
    return "; ".join(parts) or "no settings"


@dataclasses.dataclass(frozen=True)
class Flat:
    """One leaf setting of a nested settings class: its recipe key and flag parameter, and its place."""

    key: str
    path: tuple[str, ...]  # field names from the outer class down
    field: dataclasses.Field
    hint: Any


def _inner(f: dataclasses.Field, hint: Any) -> type | None:
    return f.metadata.get("options") or (hint if isinstance(hint, type) and dataclasses.is_dataclass(hint) else None)


def flatten(cls: type, path: tuple[str, ...] = ()) -> list[Flat]:
    """The leaves of `cls`: a nested settings dataclass (or an options dict) contributes its own fields,
    so a recipe writes `temperature`, not `sampling.temperature`."""
    kinds, out = hints(cls), []
    for f in dataclasses.fields(cls):
        inner = _inner(f, kinds[f.name])
        if inner is not None:
            out += flatten(inner, (*path, f.name))
        else:
            out.append(Flat(f.metadata.get("key") or f.name, (*path, f.name), f, kinds[f.name]))
    return out


def check_flat(leaves: list[Flat], values: Mapping[str, Any] | None, where: str) -> dict[str, Any]:
    """Flat values (keyed as `flatten` names them) converted to their types; unknown keys refused."""
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise FactoryError(f"{where}: settings must be a mapping of name: value, got {values!r}")
    by_key = {leaf.key: leaf for leaf in leaves}
    for key in values:
        if key not in by_key:
            raise FactoryError(f"{where}: unknown setting '{key}'; the settings are: {', '.join(by_key)}")
    return {key: check_value(by_key[key].hint, value, key, where) for key, value in values.items()}


def from_flat(cls: type, values: Mapping[str, Any], where: str, leaves: list[Flat] | None = None) -> Any:
    """`cls` from flat values, each checked; an options dict holds the given keys and the defaults of
    its settings class that are not None. Nested settings are validated here, `cls` by its user."""
    leaves = flatten(cls) if leaves is None else leaves
    by_key = {leaf.key: leaf for leaf in leaves}
    nested: dict[str, Any] = {}
    for key, value in check_flat(leaves, values, where).items():
        node = nested
        for part in by_key[key].path[:-1]:
            node = node.setdefault(part, {})
        node[by_key[key].path[-1]] = value
    return _make(cls, nested, where)


def _make(cls: type, values: dict[str, Any], where: str) -> Any:
    kinds, kwargs = hints(cls), {}
    for f in dataclasses.fields(cls):
        inner = _inner(f, kinds[f.name])
        if inner is None:
            if f.name in values:
                kwargs[f.name] = values[f.name]
            continue
        made = validated(_make(inner, values.get(f.name, {}), where), where)
        if f.metadata.get("options"):
            made = {k: v for k, v in dataclasses.asdict(made).items() if v is not None}
        kwargs[f.name] = made
    return cls(**kwargs)
