"""reasoning-gym's procedural datasets: the `gym:` problem source and the scorers of `gym:<name>` tasks.

`gym:NAME?n=100&seed=0&OPTION=VALUE...` is `reasoning_gym.create_dataset(NAME, size=n, seed=seed,
**options)`; each entry becomes one Problem with task `gym:NAME`. An entry's `metadata` is what its
scorer reads (a puzzle's board, the valid answers), so it rides in the problem's context and from
there in every sample's `metadata.context`, as JSON. JSON has no tuples and some scorers compare a
parsed answer with a tuple (ARC boards are tuples of tuples), so the paths of the tuples travel with
the metadata and go back in before scoring; the dataset options ride along too, since some scorers
read their dataset's config.
"""

from __future__ import annotations

import ast
import collections.abc
import dataclasses
import datetime
import difflib
import enum
import functools
import json
import types
import typing
from typing import Any
from urllib.parse import unquote

from factory.core.errors import FactoryError
from factory.core.problem import Problem
from factory.core.sample import stable_hash

INSTALL = "pip install 'reasoning-factory[gym]'"
# The context keys a gym scorer needs: generation keeps them in every sample, however large.
SCORER_KEYS = ("metadata", "metadata_tuples", "gym_options")


def _registry() -> dict[str, tuple[type, type]]:
    try:
        import reasoning_gym  # noqa: F401  (importing it registers the datasets)
        from reasoning_gym.factory import DATASETS
    except ImportError:
        raise FactoryError(f"gym: sources and tasks need reasoning-gym: {INSTALL}") from None
    return DATASETS


def _config_class(name: str, where: str) -> type:
    registry = _registry()
    if name not in registry:
        close = difflib.get_close_matches(name, registry, n=5, cutoff=0.5)
        hint = (f"close names: {', '.join(close)}" if close
                else f"some of its {len(registry)}: {', '.join(sorted(registry)[:8])}")
        raise FactoryError(f"{where}: reasoning-gym has no dataset '{name}'; {hint}")
    return registry[name][1]


# ------------------------------------------------------------------ option values from a query string


def _convert(raw: str, kind: Any) -> Any:
    """A query-string value as the config field's type: `operators=+,-` is a list, `allow_negation=false` a bool."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if raw.lower() in ("none", "null"):
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(raw, inner[0]) if len(inner) == 1 else raw
    if kind is str or origin is typing.Literal:
        return raw
    if kind is bool:
        if raw.lower() in ("true", "1", "yes"):
            return True
        if raw.lower() in ("false", "0", "no"):
            return False
        raise ValueError("use true or false")
    if kind in (int, float):
        return kind(raw)
    if kind in (datetime.date, datetime.time):
        return kind.fromisoformat(raw)
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return kind[raw] if raw in kind.__members__ else kind(raw)
    if kind in (list, tuple) or origin in (list, tuple, collections.abc.Sequence):
        try:  # a Python or JSON literal: [1, 2] or ("a", "b")
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = None
        if not isinstance(value, (list, tuple)):  # else comma-separated items: +,-,*
            item = args[0] if args else str
            value = [_convert(part.strip(), item) for part in raw.split(",")]
        return tuple(value) if (kind is tuple or origin is tuple) else list(value)
    raise ValueError("this option cannot be written in a query string")


def _options(name: str, raw: dict[str, str], where: str) -> dict[str, Any]:
    cls = _config_class(name, where)
    settable = [f.name for f in dataclasses.fields(cls) if f.name not in ("size", "seed")]
    unknown = sorted(set(raw) - set(settable))
    if unknown:
        raise FactoryError(f"{where}: {name} has no option {', '.join(unknown)}; "
                           f"its options are {', '.join(settable) or 'none'}")
    hints = typing.get_type_hints(cls)
    out = {}
    for key, value in raw.items():
        try:
            out[key] = _convert(value, hints.get(key, str))
        except (ValueError, KeyError, TypeError) as e:
            raise FactoryError(f"{where}: bad value {key}={value!r} for {name} ({e})") from None
    return out


def _create(name: str, where: str, **kwargs: Any) -> Any:
    import reasoning_gym

    try:
        return reasoning_gym.create_dataset(name, **kwargs)
    except Exception as e:  # configs refuse with AssertionError, ValueError or TypeError
        raise FactoryError(f"{where}: reasoning-gym's {name} config rejects it: {_message(e)}") from None


def _message(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


# ------------------------------------------------------------------ JSON-safe metadata


def json_safe(value: Any) -> tuple[Any, list[list[Any]]]:
    """`value` as plain JSON data, and the paths (keys and indexes) where it held tuples.

    Other non-JSON values go through json's default=str (a set or a Fraction becomes its text);
    keys become strings, as JSON writes them.
    """
    tuples: list[list[Any]] = []

    def walk(v: Any, path: list[Any]) -> Any:
        if isinstance(v, dict):
            return {str(k) if not isinstance(k, str) else k: walk(x, [*path, str(k)]) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            if isinstance(v, tuple):
                tuples.append(path)
            return [walk(x, [*path, i]) for i, x in enumerate(v)]
        return v

    plain = walk(value, [])
    return json.loads(json.dumps(plain, ensure_ascii=False, default=str)), tuples


def restore_tuples(value: Any, paths: list[list[Any]]) -> Any:
    """Undo json_safe's tuple-to-list step (a copy: stored metadata is never changed)."""
    value = json.loads(json.dumps(value))
    for path in sorted(paths, key=len, reverse=True):  # inner tuples first: their parents are still lists
        if not path:
            value = tuple(value)
            continue
        parent = value
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = tuple(parent[path[-1]])
    return value


# ------------------------------------------------------------------ the source


def load(spec: str, limit: int | None = None) -> list[Problem]:
    """Problems from `gym:NAME?n=100&seed=0&OPTION=VALUE...`; one clear FactoryError for bad input."""
    name, _, query = spec.removeprefix("gym:").partition("?")
    where = f"'{spec}'"
    if not name:
        raise FactoryError(f"{where}: name a reasoning-gym dataset, e.g. gym:basic_arithmetic?n=100&seed=0")
    # Split by hand: parse_qsl reads "+" as a space, and `operators=+,-` means plus and minus.
    pairs = [tuple(unquote(x) for x in part.partition("=")[::2]) for part in query.split("&") if part]
    raw = dict(pairs)
    if len(raw) != len(pairs):
        raise FactoryError(f"{where}: a parameter is given twice")
    try:
        n, seed = int(raw.pop("n", 100)), int(raw.pop("seed", 0))
    except ValueError as e:
        raise FactoryError(f"{where}: bad number ({e})") from None
    if not 1 <= n <= 10_000_000 or not 0 <= seed < 2**32:
        raise FactoryError(f"{where}: n must be in 1..10000000 and seed in 0..{2**32 - 1}")
    options = _options(name, raw, where)
    dataset = _create(name, where, size=n, seed=seed, **options)
    problems = []
    for i in range(min(n, limit) if limit else n):
        try:
            entry = dataset[i]
        except Exception as e:  # a generator that fails on these options: one line, not a traceback
            raise FactoryError(f"{where}: reasoning-gym failed making problem {i}: {_message(e)}") from None
        metadata, tuples = json_safe(entry.get("metadata") or {})
        context: dict[str, Any] = {"metadata": metadata}
        if tuples:
            context["metadata_tuples"] = tuples
        if raw:
            context["gym_options"] = raw  # the query's text: JSON-safe, converted again by the scorer
        problems.append(Problem(
            problem_id=stable_hash("gym", name, raw, seed, i),
            problem=str(entry["question"]),
            answer=None if entry.get("answer") is None else str(entry["answer"]),
            task=f"gym:{name}",
            source=spec,
            context=context,
        ))
    return problems


# ------------------------------------------------------------------ the verifier


@functools.lru_cache(maxsize=256)
def _scorer(name: str, options_json: str) -> collections.abc.Callable[[str | None, dict[str, Any]], float]:
    # Some scorers read their dataset's config (decimal places, board format): build it with the
    # problem's own options, once per process.
    raw = json.loads(options_json)
    return _create(name, f"gym:{name}", **_options(name, raw, f"gym:{name}")).score_answer


def score(task: str, final: str | None, problem: str, answer: str | None, context: dict[str, Any]) -> float:
    """reasoning-gym's score (0..1) of `final` for a `gym:<name>` problem; raises on anything wrong."""
    name = task.split(":", 1)[1] if ":" in task else ""
    if not name:
        raise FactoryError(f"task '{task}' names no reasoning-gym dataset; write gym:NAME")
    _config_class(name, f"task '{task}'")
    metadata = context.get("metadata", context)
    if isinstance(metadata, str):  # imported rows may carry it as JSON text
        metadata = json.loads(metadata)
    tuples = context.get("metadata_tuples") or []
    entry = {"question": problem, "answer": answer, "metadata": restore_tuples(metadata, tuples)}
    options = context.get("gym_options") or {}
    return float(_scorer(name, json.dumps(options, sort_keys=True))(final, entry))
