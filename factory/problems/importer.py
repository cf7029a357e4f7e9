"""`factory import SOURCE RUN`: generations that already exist become a run, to curate like any other.

Any source `--problems` accepts (JSONL, Parquet, CSV, a datasets folder, `hf:ORG/NAME`) with:
- a completion column (text, or a list of texts: one sample per element, as OpenR1-Math-220k's
  `generations`), with optional `reasoning` (joined back as `<think>reasoning</think>completion`),
  `finish_reason` and `completion_tokens` columns (lists run parallel to a list of completions), or
- a `messages` / `conversations` column of chat turns: the last assistant turn is the completion,
  the user turn before it the problem (when there is no problem column).
Each completion is parsed in `--format` (`auto` detects it per sample and records which), and the
prefill a chat template gave it (a closing </think> never opened) is put back, so `filter`, `show`,
`report`, `export` and `train sft` treat the run as if the factory had generated it. Shards are written
and marked as `generate` writes them, so a killed import resumes.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from factory.core import shards
from factory.core.errors import FactoryError
from factory.core.problem import Problem
from factory.core.sample import stable_hash, to_table
from factory.core.settings import setting
from factory.core.textnorm import text_hash
from factory.generate.runner import small_context
from factory.problems.sources import FIELDS, problem_columns, problem_from_row, read_rows
from factory.prompting.formats import get_format, implied_prefill, parse_output

# Fields an import maps with --map FIELD=COLUMN, beyond the problem's; and the columns tried when not mapped.
IMPORT_FIELDS = ("completion", "messages", "reasoning", "finish_reason", "completion_tokens", "prefill", "model")
GUESSES = {
    "completion": ("completion", "completions", "generation", "generations", "response", "responses", "output",
                   "outputs"),
    "messages": ("messages", "conversations", "conversation"),
    "reasoning": ("reasoning_content",),
    "finish_reason": ("finish_reason", "finish_reasons", "stop_reason"),
    "completion_tokens": ("completion_tokens",),
    "prefill": ("prefill",),
}
ROLES = {"user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant", "model": "assistant",
         "system": "system"}


@dataclass
class ImportConfig:
    """What an import reads and how: the `factory import` flags are these fields (but the source, an argument)."""

    source: str = setting(help="Existing generations: .jsonl/.parquet/.csv, a datasets folder or hf:ORG/NAME[:SPLIT], "
                               "with a completion column (text or list of texts) or chat messages.")
    format: str = setting("auto", "Output format of the completions (see `factory formats`); auto detects it per "
                                  "sample.", flags=("--format", "-f"))
    model: str = setting("unknown", "Who wrote the completions, recorded in every sample.", flags=("--model", "-m"))
    mapping: dict[str, str] = setting({}, f"FIELD=COLUMN for {', '.join((*FIELDS, *IMPORT_FIELDS))}.",
                                      flags=("--map",), key="map")
    limit: int | None = setting(None, "Import only the first N rows.")
    shard_size: int = setting(2048, "Samples per shard.")
    tokenizer: str | None = setting(None, "Tokenizer (model folder or hub id) to count completion tokens when the "
                                          "source has none.")
    allow_empty: bool = setting(False, "Keep empty completions as failed samples instead of refusing the source.")

    def validate(self) -> None:
        fields = (*FIELDS, *IMPORT_FIELDS)
        for key, column in self.mapping.items():
            if key not in fields:
                raise FactoryError(f"bad --map '{key}={column}': field '{key}' is not one of {', '.join(fields)}")
        if self.limit is not None and self.limit < 1:
            raise FactoryError(f"--limit {self.limit}: import at least 1 row, or no limit")
        if self.shard_size < 1:
            raise FactoryError("--shard-size must be at least 1")


@dataclass
class ImportResult:
    run_dir: Path
    samples: int = 0
    shards_written: int = 0
    shards_done_before: int = 0
    formats: dict[str, int] = field(default_factory=dict)
    empty: int = 0


def _columns(rows: list[dict[str, Any]], mapping: dict[str, str], where: str) -> dict[str, str | None]:
    """Import field -> column present in the source (mapped, else the first known name), checked once."""
    first, cols = rows[0], {}
    for f in (*IMPORT_FIELDS, *FIELDS):
        if f in mapping and mapping[f] not in first:
            raise FactoryError(f"{where}: mapped column '{mapping[f]}' for {f} does not exist; "
                               f"columns are {', '.join(first)}")
    for f in IMPORT_FIELDS:
        cols[f] = mapping.get(f) or next((c for c in GUESSES.get(f, ()) if c in first), None)
    if "messages" not in mapping and cols["completion"]:
        cols["messages"] = None  # an explicit completion column wins over chat turns
    if not cols["completion"] and not cols["messages"]:
        raise FactoryError(
            f"{where}: no completions found: no column named {', '.join(GUESSES['completion'] + GUESSES['messages'])}; "
            f"columns are {', '.join(first)}: map one with --map completion=COLUMN (text or list of texts) "
            "or --map messages=COLUMN (chat turns)"
        )
    return cols


def _turns(value: Any, where: str) -> list[dict[str, str]]:
    if isinstance(value, str):
        value = json.loads(value)
    if not isinstance(value, list) or not all(isinstance(m, dict) for m in value):
        raise FactoryError(f"{where}: messages must be a list of {{role, content}} (or {{from, value}}) turns")
    turns = []
    for m in value:
        role = ROLES.get(str(m.get("role") or m.get("from") or "").lower())
        content = m.get("content") if "content" in m else m.get("value")
        reasoning = m.get("reasoning_content") or m.get("reasoning")
        if role == "assistant" and isinstance(reasoning, str) and reasoning:
            content = f"<think>\n{reasoning}\n</think>\n\n{content or ''}"
        turns.append({"role": role or "unknown", "content": content if isinstance(content, str) else ""})
    return turns


def _at(value: Any, j: int) -> Any:
    """Element j of a list column that runs parallel to a list of completions; a scalar applies to all."""
    if isinstance(value, (list, tuple)):
        return value[j] if j < len(value) else None
    return value


def _completions(row: dict[str, Any], cols: dict[str, str | None],
                 where: str) -> tuple[list[Any], str | None, list | None]:
    """The row's completions and, from chat turns, the problem (the user turn before the answer) and
    the prompt's turns (system and that user turn) that exports hand to trainers."""
    if cols["completion"]:
        value = row.get(cols["completion"])
        return (list(value) if isinstance(value, (list, tuple)) else [value]), None, None
    turns = _turns(row.get(cols["messages"]), where)
    answers = [i for i, t in enumerate(turns) if t["role"] == "assistant"]
    if not answers:
        raise FactoryError(f"{where}: no assistant turn in its messages; each row needs the answer to import")
    last = answers[-1]
    users = [t for t in turns[:last] if t["role"] == "user"]
    prompt = [t for t in turns[:last] if t["role"] == "system"] + users[-1:]
    return [turns[last]["content"]], (users[-1]["content"] if users else None), prompt


def _samples(rows: list[dict[str, Any]], config: ImportConfig,
             counter: Callable[[str], int | None]) -> Iterator[dict[str, Any]]:
    where = config.source
    cols = _columns(rows, config.mapping, where)
    extra = {c for f, c in cols.items() if c and f != "model"}
    has_problem = config.mapping.get("problem", "problem") in rows[0]
    if not has_problem and not cols["messages"]:
        problem_columns(rows, where, config.mapping)  # the usual one-line error naming the columns
    col = {f: config.mapping.get(f, f) for f in FIELDS}
    index: dict[str, int] = defaultdict(int)
    for i, row in enumerate(rows):
        at = f"{where}: row {i + 1}"
        completions, asked, prompt = _completions(row, cols, at)
        if not has_problem:
            row = {**row, col["problem"]: asked}
        p: Problem = problem_from_row(row, col, where, i, skip=extra)
        model = str(row.get(cols["model"]) or config.model) if cols["model"] else config.model
        context = small_context(p)
        for j, text in enumerate(completions):
            yield _sample(p, model, text, j, row, cols, config, context, index, at, counter, prompt)


def _sample(p: Problem, model: str, text: Any, j: int, row: dict[str, Any], cols: dict[str, str | None],
            config: ImportConfig, context: dict[str, Any], index: dict[str, int], at: str,
            counter: Callable[[str], int | None], prompt: list | None = None) -> dict[str, Any]:
    error = None
    if text is not None and not isinstance(text, str):
        raise FactoryError(f"{at}: completion {j + 1} is {type(text).__name__}, not text; "
                           "map a text column with --map completion=COLUMN")
    if not (text or "").strip():
        if not config.allow_empty:
            raise FactoryError(f"{at}: completion {j + 1} is empty; remove such rows, or pass --allow-empty to keep "
                               "them as failed samples")
        text, error = "", "empty completion in the source"
    reasoning = _at(row.get(cols["reasoning"]), j) if cols["reasoning"] else None
    if isinstance(reasoning, str) and reasoning.strip():
        text = f"<think>\n{reasoning.strip()}\n</think>\n\n{text}"
    prefill = _at(row.get(cols["prefill"]), j) if cols["prefill"] else None
    prefill = prefill if isinstance(prefill, str) else implied_prefill(text)
    parsed = parse_output(prefill + text, config.format) if error is None else None
    tokens = _at(row.get(cols["completion_tokens"]), j) if cols["completion_tokens"] else None
    finish = _at(row.get(cols["finish_reason"]), j) if cols["finish_reason"] else None
    k = index[p.problem_id]
    index[p.problem_id] += 1
    return {
        "id": stable_hash(p.problem_id, "import", model, k),
        "problem_id": p.problem_id, "sample_index": k, "source": p.source, "task": p.task, "problem": p.problem,
        "answer": p.answer, "tests": p.tests, "template": "import", "prompt": p.problem,
        "completion": text, "completion_hash": text_hash(text),
        "reasoning": parsed.reasoning if parsed else None, "final": parsed.final if parsed else None,
        "parse_error": parsed.error if parsed else None,
        "finish_reason": str(finish) if finish is not None else None,
        "prompt_tokens": None, "completion_tokens": int(tokens) if tokens is not None else counter(text),
        "model": model, "sampling": None, "error": error, "scores": "{}",
        "metadata": {"backend": "import", "prefill": prefill,  # written as JSON by to_table
                     "format": parsed.format if parsed and parsed.format else config.format,
                     **({"messages": prompt} if prompt else {}),
                     "context": context},
    }


def _token_counter(tokenizer: str | None) -> Callable[[str], int | None]:
    if not tokenizer:
        return lambda _text: None
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(tokenizer)
    except (OSError, ValueError) as e:
        raise FactoryError(f"--tokenizer '{tokenizer}': cannot load it ({str(e).splitlines()[0]})") from None
    return lambda text: len(tok(text, add_special_tokens=False)["input_ids"])


def _source_identity(spec: str) -> Any:
    """A local source's files (names, sizes, mtimes): a changed file is a different import."""
    path = Path(spec)
    if spec.startswith("hf:") or not path.exists():
        return spec
    files = sorted(p for p in ([path] if path.is_file() else path.rglob("*")) if p.is_file())
    return stable_hash([(str(p.relative_to(path.parent)), p.stat().st_size, p.stat().st_mtime_ns) for p in files])


def import_generations(config: ImportConfig, run_dir: Path,
                       log: Callable[[str], None] = lambda _m: None) -> ImportResult:
    from factory.core.lock import run_lock

    config.validate()
    get_format(config.format)  # an unknown format fails before any reading
    rows = read_rows(config.source, config.limit)
    if not rows:
        raise FactoryError(f"{config.source}: the source has no rows")
    rows = rows[: config.limit] if config.limit else rows
    fingerprint_config = {"kind": "import", **asdict(config), "problems": config.source, "template": "import",
                          "source_identity": _source_identity(config.source)}
    fingerprint = stable_hash(fingerprint_config)
    # Every row is read and checked before anything is written: bad input never leaves half a run.
    samples = list(_samples(rows, config, _token_counter(config.tokenizer)))
    result = ImportResult(run_dir, samples=len(samples), empty=sum(s["error"] is not None for s in samples))
    for s in samples:
        fmt = s["metadata"]["format"]
        result.formats[fmt] = result.formats.get(fmt, 0) + 1
    with run_lock(run_dir):
        shards.check_run(run_dir, fingerprint_config, fingerprint)
        shards.remove_stale_temp_files(run_dir / "generated")
        shards.write_manifest(run_dir, fingerprint_config, fingerprint)
        for k in range(0, (len(samples) + config.shard_size - 1) // config.shard_size):
            path = shards.shard_path(run_dir, "generated", k)
            if shards.is_done(path):
                result.shards_done_before += 1
                continue
            batch = samples[k * config.shard_size : (k + 1) * config.shard_size]
            shards.write_shard(path, to_table(batch),
                               {"imported": len(batch), "errors": sum(bool(r["error"]) for r in batch)})
            result.shards_written += 1
    if not result.shards_written:
        log(f"all {result.shards_done_before} shards of {run_dir} are already imported; nothing to do")
    return result
