"""Problems from JSONL / Parquet / CSV / Hugging Face datasets / built-in tasks / earlier runs.

A source spec is one string:
- a file path: `problems.jsonl`, `problems.parquet`, `problems.csv`
- a folder saved by `datasets.save_to_disk`, or a folder of data files `load_dataset` reads
- `hf:ORG/NAME[:SPLIT]`: a dataset on the Hugging Face Hub (needs network)
- `builtin:arithmetic[?n=200&seed=0]`: the built-in procedural arithmetic problems
- `gym:NAME[?n=100&seed=0&OPTION=VALUE...]`: a reasoning-gym dataset (the `gym` extra), its
  options as further parameters, e.g. `gym:basic_arithmetic?n=50&seed=1&min_terms=2`
- a run folder (has `manifest.json`): each earlier sample becomes one input, for `refine`
- `run:NAME[?stage=curated]`: the same, by run name, from its generated (default), curated
  or rejected samples (refine only the correct R1-Zero outputs, say)

Columns are mapped with `{"problem": "question", "answer": "solution"}` style mappings; the
fields are problem (required), answer, tests, task, id.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from factory.core.errors import FactoryError, RunBusy
from factory.core.problem import Problem
from factory.core.sample import stable_hash
from factory.problems import arithmetic

FIELDS = ("problem", "answer", "tests", "task", "id")


def parse_mapping(items: list[str] | None, fields: tuple[str, ...] = FIELDS) -> dict[str, str]:
    """`["problem=question", "answer=solution"]` -> {"problem": "question", ...}."""
    mapping: dict[str, str] = {}
    for item in items or []:
        key, sep, column = item.partition("=")
        if not sep or not column:
            raise FactoryError(f"bad --map '{item}': write FIELD=COLUMN, e.g. --map problem=question")
        if key not in fields:
            raise FactoryError(f"bad --map '{item}': field '{key}' is not one of {', '.join(fields)}")
        mapping[key] = column
    return mapping


def _builtin(spec: str) -> list[Problem]:
    name, _, query = spec.removeprefix("builtin:").partition("?")
    if name != "arithmetic":
        raise FactoryError(f"unknown built-in source '{name}': the built-in sources are: arithmetic")
    params = dict(parse_qsl(query))
    unknown = set(params) - {"n", "seed", "max_operand"}
    if unknown:
        raise FactoryError(f"unknown parameter {sorted(unknown)} in '{spec}': use n, seed, max_operand")
    try:
        n, seed = int(params.get("n", 100)), int(params.get("seed", 0))
        max_operand = int(params.get("max_operand", 12))
    except ValueError as e:
        raise FactoryError(f"bad number in '{spec}': {e}") from None
    if n < 1 or max_operand < 2:
        raise FactoryError(f"'{spec}': n must be at least 1 and max_operand at least 2")
    problems = []
    for p in arithmetic.generate(n, seed=seed, max_operand=max_operand):
        problems.append(
            Problem(
                problem_id=stable_hash("arithmetic", p.expression),
                problem=arithmetic.question(p),
                answer=str(p.answer),
                task="arithmetic",
                source="builtin:arithmetic",
                context={"solution": arithmetic.solution_text(p)},
            )
        )
    return problems


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise FactoryError(f"{path}:{lineno}: not UTF-8 text (bad byte at column {e.start + 1}); "
                                   "save the file as UTF-8") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise FactoryError(
                    f"{path}:{lineno}: malformed JSON at column {e.colno} ({e.msg}); "
                    "each line must be one JSON object"
                ) from None
            if not isinstance(row, dict):
                raise FactoryError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            rows.append(row)
    return rows


def _read_rows(path: Path) -> list[dict[str, Any]]:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json") and path.is_file():
        return _read_jsonl(path)
    if suffix == ".csv":
        csv.field_size_limit(sys.maxsize)  # long problems and reference solutions are normal data
        try:
            with path.open(encoding="utf-8", newline="") as f:
                return list(csv.DictReader(f))
        except UnicodeDecodeError as e:
            raise FactoryError(f"{path}: not UTF-8 text (bad byte at offset {e.start}); "
                               "save the file as UTF-8") from None
        except csv.Error as e:
            raise FactoryError(f"{path}: not a readable CSV file ({e})") from None
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path).to_pylist()
        except Exception as e:  # pyarrow raises several types for a corrupt file
            raise FactoryError(f"{path}: not a readable Parquet file ({e})") from None
    if path.is_dir():
        return _read_hf_dataset(str(path), local=True)
    raise FactoryError(
        f"{path}: unsupported file type '{suffix}': use .jsonl, .parquet, .csv, a datasets folder, "
        "hf:ORG/NAME or builtin:arithmetic"
    )


def _read_hf_dataset(spec: str, local: bool, limit: int | None = None) -> list[dict[str, Any]]:
    import datasets

    name, _, split = spec.partition(":") if not local else (spec, "", "")
    try:
        saved = any((Path(spec) / f).exists() for f in ("dataset_info.json", "state.json", "dataset_dict.json"))
        if local and saved:
            ds = datasets.load_from_disk(spec)
        else:
            ds = datasets.load_dataset(name, split=split or None)
    except Exception as e:  # datasets raises many types for a missing/unreachable dataset
        raise FactoryError(f"cannot load dataset '{spec}': {str(e).splitlines()[0]}") from None
    if isinstance(ds, datasets.DatasetDict):
        chosen = split or ("train" if "train" in ds else next(iter(ds)))
        ds = ds[chosen]
    if limit:  # before materializing: a large split need not fit in memory for a small run
        ds = ds.select(range(min(limit, len(ds))))
    return ds.to_list()


def problem_columns(rows: list[dict[str, Any]], where: str, mapping: dict[str, str]) -> dict[str, str]:
    """Field -> column, checked against the first row: one clear line for a missing column."""
    if not rows:
        raise FactoryError(f"{where}: no problems found (the source is empty)")
    columns = list(rows[0].keys())
    col = {f: mapping.get(f, f) for f in FIELDS}
    if col["problem"] not in rows[0]:
        raise FactoryError(
            f"{where}: no column '{col['problem']}' for the problem text; columns are "
            f"{', '.join(columns)}: map one with --map problem=COLUMN"
        )
    for f in ("answer", "tests", "task", "id"):
        if f in mapping and mapping[f] not in rows[0]:
            raise FactoryError(
                f"{where}: mapped column '{mapping[f]}' for {f} does not exist; columns are {', '.join(columns)}"
            )
    return col


def problem_from_row(row: dict[str, Any], col: dict[str, str], where: str, i: int,
                     skip: set[str] = frozenset()) -> Problem:
    """One source row -> a Problem; columns in `skip` stay out of its context (and metadata)."""
    text = row.get(col["problem"])
    if text is None or not str(text).strip():
        raise FactoryError(f"{where}: row {i + 1} has an empty '{col['problem']}'; fill or remove it")
    answer, tests = row.get(col["answer"]), row.get(col["tests"])
    if tests is not None and not isinstance(tests, str):
        tests = json.dumps(tests, ensure_ascii=False)
    pid = row.get(col["id"])
    used = {col[f] for f in FIELDS} | set(skip)
    return Problem(
        problem_id=str(pid) if pid is not None else stable_hash(str(text)),
        problem=str(text),
        answer=None if answer is None else str(answer),
        tests=tests,
        task=str(row.get(col["task"]) or ("code" if tests else "math")),
        source=where,
        context={k: v for k, v in row.items() if k not in used},
    )


def _from_rows(rows: list[dict[str, Any]], where: str, mapping: dict[str, str]) -> list[Problem]:
    col = problem_columns(rows, where, mapping)
    problems = [problem_from_row(row, col, where, i) for i, row in enumerate(rows)]
    seen: set[str] = set()
    for p in problems:
        if p.problem_id in seen:
            raise FactoryError(f"{where}: duplicate problem id '{p.problem_id}'; ids must be unique")
        seen.add(p.problem_id)
    return problems


RUN_STAGES = ("generated", "curated", "rejected")


def _run_spec(spec: str) -> tuple[Path, str]:
    from factory.core.shards import resolve_run

    name, _, query = spec.removeprefix("run:").partition("?")
    params = dict(parse_qsl(query))
    stage = params.pop("stage", "generated")
    if params or stage not in RUN_STAGES:
        raise FactoryError(f"bad source '{spec}': write run:NAME or run:NAME?stage=S "
                           f"with S one of {', '.join(RUN_STAGES)}")
    run_dir = resolve_run(name)
    if not (run_dir / "manifest.json").exists():
        raise FactoryError(f"{spec}: {run_dir} is not a run folder; "
                           "run the recipe or `factory generate` that makes it first")
    from factory.core.lock import holds, live_owner

    owner = live_owner(run_dir)
    if owner and not holds(run_dir):  # half-written inputs would be fixed in this run's fingerprint
        raise RunBusy(f"{spec}: {run_dir} is being written by pid {owner.get('pid')} ({owner.get('command', '')}); "
                           "start this run after that one finishes")
    if stage != "generated" and not (run_dir / "funnel.json").exists():
        raise FactoryError(f"{spec}: {run_dir} is not filtered to the end (no funnel.json); finish its filter first")
    return run_dir, stage


def _from_run(run_dir: Path, stage: str = "generated") -> list[Problem]:
    """Each sample of an earlier run becomes one input (for the refine template)."""
    from factory.core.shards import read_samples

    rows = read_samples(run_dir, stage)
    if not rows:
        hint = "run generate first" if stage == "generated" else f"filter it first, or none of its samples are {stage}"
        raise FactoryError(f"{run_dir}: the run has no finished {stage} shards to read; {hint}")
    return [
        Problem(
            problem_id=r["id"],
            problem=r["problem"],
            answer=r["answer"],
            tests=r["tests"],
            task=r["task"] or "math",
            source=f"run:{run_dir.name}",
            context={
                "completion": r["completion"] or "",
                "reasoning": r["reasoning"] or "",
                "final": r["final"] or "",
                "origin_problem_id": r["problem_id"],
                "origin_template": r["template"],
            },
        )
        for r in rows
    ]


def load_problems(spec: str, mapping: dict[str, str] | None = None, limit: int | None = None) -> list[Problem]:
    """Load problems from a source spec (see module docstring); raise FactoryError on bad input."""
    mapping = mapping or {}
    if spec.startswith("builtin:"):
        problems = _builtin(spec)
    elif spec.startswith("gym:"):
        from factory.problems import gym

        return gym.load(spec, limit)  # makes only the problems asked for
    elif spec.startswith("run:"):
        problems = _from_run(*_run_spec(spec))
    elif not spec.startswith("hf:") and Path(spec).is_dir() and (Path(spec) / "manifest.json").exists():
        problems = _from_run(Path(spec))
    else:
        problems = _from_rows(read_rows(spec, limit), spec, mapping)
    return problems[:limit] if limit else problems


def read_rows(spec: str, limit: int | None = None) -> list[dict[str, Any]]:
    """The rows of a file, datasets folder or `hf:` dataset, as dicts (also what `factory import` reads)."""
    if spec.startswith("hf:"):
        return _read_hf_dataset(spec.removeprefix("hf:"), local=False, limit=limit)
    path = Path(spec)
    if not path.exists():
        raise FactoryError(f"{spec}: no such file or folder; check the path, or use builtin:arithmetic")
    if path.is_file() and path.stat().st_size == 0:
        raise FactoryError(f"{spec}: the file is empty; it needs one problem per row")
    return _read_rows(path)
