"""Export a filtered run as a Hugging Face dataset folder, and upload that folder to the Hub.

The export is the Hub's own layout, so `datasets.load_dataset(folder)` and the Hub's viewer
read it with no loading script:
    README.md                          dataset card: YAML front matter + what, how, funnel, lengths
    data/train-00000-of-00002.parquet  the curated samples in chat form, `shard_rows` per file
Upload is a thin wrapper over huggingface_hub; the token is checked first (whoami), so a
missing or rejected token fails in a second, before any export or upload work.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from factory import __version__
from factory.core import shards
from factory.core.errors import FactoryError
from factory.filter.chain import FILTER_MANIFEST
from factory.filter.funnel import compute_funnel
from factory.train.data import prompt_messages, sample_to_messages

MESSAGES = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
# `messages` for SFT trainers; `prompt` + `completion` in TRL's conversational prompt-completion form
# (its trainers then take the loss on the completion only); `solution` is what open-r1's rewards read.
EXPORT_SCHEMA = pa.schema(
    [("messages", MESSAGES), ("prompt", MESSAGES), ("completion", MESSAGES)]
    + [(c, pa.string()) for c in ("reasoning", "final", "answer", "solution", "problem", "problem_id", "id")]
    + [(c, pa.string()) for c in ("source", "task", "template", "model")]
    + [("completion_tokens", pa.int32()), ("scores", pa.string())]
)
# The `rejected` config: the same columns plus which step rejected each sample and why.
REJECTED_SCHEMA = pa.schema([*EXPORT_SCHEMA, ("rejected_by", pa.string()), ("reason", pa.string())])
LANGUAGE_SAMPLE = 500  # problems read to name the card's languages
TAGS = ["reasoning", "chain-of-thought", "synthetic", "rejection-sampling"]
# The Hub's size_categories values; the first bound above the row count names the bucket.
SIZES = [(10**3, "n<1K"), (10**4, "1K<n<10K"), (10**5, "10K<n<100K"), (10**6, "100K<n<1M"),
         (10**7, "1M<n<10M"), (10**8, "10M<n<100M"), (10**9, "100M<n<1B")]
# Long reasoning samples are ~100 KB each; 1000-row groups keep a group well under the size
# the Hub's viewer pages through, without making small files mostly metadata.
ROW_GROUP = 1000
LOGIN = "run `hf auth login` or set HF_TOKEN to a token with write access (https://huggingface.co/settings/tokens)"


def size_category(n: int) -> str:
    return next((name for bound, name in SIZES if n < bound), "1B<n<10B")


def _export_row(row: dict[str, Any], schema: pa.Schema = EXPORT_SCHEMA) -> dict[str, Any]:
    out = {name: row.get(name) for name in schema.names}
    prompt = prompt_messages(row)  # the template's system prompt and the problem's turn
    answer = sample_to_messages(row)[-1]  # the prefill goes into the assistant turn, as SFT trains it
    out.update(messages=[*prompt, answer], prompt=prompt, completion=[answer], solution=row.get("answer"))
    return out


def _features(t: pa.DataType) -> dict[str, Any]:
    """The card's `dataset_info` form of an Arrow type (only what EXPORT_SCHEMA uses)."""
    if pa.types.is_list(t):
        return {"list": [{"name": f.name, **_features(f.type)} for f in t.value_type]}
    return {"dtype": str(t)}


def _is_export(path: Path) -> bool:
    data = path / "data"
    return (path / "README.md").is_file() and data.is_dir() and all(f.name.startswith(("train-", "rejected-"))
                                                                    for f in data.iterdir())


def _swap_into_place(tmp: Path, to: Path) -> None:
    """Rename the finished folder into place; an earlier export is moved aside, then deleted.

    Readers see the old export, then (for an instant) none, then the new one, never a mix.
    """
    if not to.exists():
        os.replace(tmp, to)
        return
    old = Path(tempfile.mkdtemp(dir=to.parent, prefix=f".{to.name}.", suffix=".old"))
    os.replace(to, old)
    os.replace(tmp, to)
    shutil.rmtree(old, ignore_errors=True)


def _stats(values: list[int]) -> list[str]:
    if not values:
        return ["-"] * 4
    return [str(min(values)), f"{statistics.median(values):g}", f"{statistics.fmean(values):.1f}", str(max(values))]


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _chain_section(run_dir: Path) -> list[str]:
    path = run_dir / FILTER_MANIFEST
    if not path.exists():
        return ["The filter chain's record (`filter.json`) is missing; the funnel below lists its steps."]
    info = json.loads(path.read_text())
    lines = [f"Filter chain `{info.get('chain')}` (digest `{info.get('digest')}`):", ""]
    try:  # the chain file may live on the machine that filtered the run only
        steps = yaml.safe_load(Path(info["path"]).read_text(encoding="utf-8"))["steps"]
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        return lines[:1]
    for step in steps:
        name, settings = (step, {}) if isinstance(step, str) else next(iter(step.items()))
        lines.append(f"1. `{name}`" + (f" {json.dumps(settings)}" if settings else ""))
    return lines


def _card_body(run_dir: Path, manifest: dict[str, Any], splits: dict[str, dict[str, Any]]) -> str:
    train = splits["train"]
    rows, tokens, chars = train["rows"], train["tokens"], train["chars"]
    config = manifest.get("config", {})
    model = config.get("model") or train["model"] or "unknown"
    sampling = config.get("sampling") or {}
    funnel = compute_funnel(run_dir)  # from the shard markers: always matches the shards on disk
    lines = [
        f"# {run_dir.name}",
        "",
        f"{rows} synthetic reasoning samples in the style of DeepSeek-R1, made by rejection sampling: "
        f"the model `{model}` wrote several completions per problem and a chain of filters kept the "
        "correct, well-formed ones. `messages` is a chat example (the template's system prompt, the "
        "problem, and the assistant's full completion, reasoning and final answer) ready for SFT; "
        "`prompt` and `completion` hold the same turns in TRL's prompt-completion form (so the loss "
        "falls on the completion only); `reasoning` and `final` hold its parts; `solution` is the gold answer."
        + (f" The `rejected` config holds the {splits['rejected']['rows']} rejected samples with the step "
           "that rejected each (`rejected_by`) and why (`reason`)." if "rejected" in splits else ""),
        "",
        "## Generation",
        "",
        f"- model: `{model}`",
        f"- template: `{config.get('template', 'unknown')}`"
        + (f" (prompt mode: {config['prompt_mode']})" if config.get("prompt_mode") else ""),
    ]
    if config.get("problems"):
        lines.append(f"- problems: `{config['problems']}`")
    if sampling:
        lines.append("- sampling: " + ", ".join(f"{k} {v}" for k, v in sampling.items()))
    lines += ["", "## Filtering", "", *_chain_section(run_dir), "",
              "| step | in | kept | rejected | reasons |", "|---|---:|---:|---:|---|"]
    for s in funnel["steps"]:
        reasons = ", ".join(f"{r} {c}" for r, c in sorted(s["rejected"].items(), key=lambda kv: -kv[1]))
        rejected = sum(s["rejected"].values())
        lines.append(f"| {_cell(s['step'])} | {s['in']} | {s['kept']} | {rejected} | {_cell(reasons)} |")
    lines += [
        "",
        f"Generated {funnel['generated']} = kept {funnel['kept']} + rejected {funnel['rejected']}.",
        "",
        "## Lengths of the kept samples",
        "",
        "| | min | median | mean | max |",
        "|---|---:|---:|---:|---:|",
        "| completion tokens | " + " | ".join(_stats(tokens)) + " |",
        "| reasoning characters | " + " | ".join(_stats(chars)) + " |",
        "",
        "## Use",
        "",
        "```python",
        "from datasets import load_dataset",
        'ds = load_dataset("REPO_ID_OR_FOLDER", split="train")',
        *(['rejected = load_dataset("REPO_ID_OR_FOLDER", "rejected", split="train")'] if "rejected" in splits else []),
        "```",
        "",
        f"Made with reasoning-factory {__version__}.",
    ]
    return "\n".join(lines) + "\n"


def _languages(texts: list[str]) -> list[str]:
    """The languages of the problems, each with at least a tenth of them (detected offline)."""
    from factory.filter.lang import detect_language

    counts: dict[str, int] = {}
    for text in texts:
        code = detect_language(text)
        if code and code != "und":
            counts[code] = counts.get(code, 0) + 1
    return sorted(c for c, n in counts.items() if n >= 0.1 * len(texts)) or ["en"]


def _source_datasets(config: dict[str, Any]) -> list[str] | None:
    """The Hub dataset the problems came from (`hf:ORG/NAME[:SPLIT]`), for the card's `source_datasets`."""
    problems = str(config.get("problems") or "")
    return [problems.removeprefix("hf:").split(":", 1)[0]] if problems.startswith("hf:") else None


def _card(run_dir: Path, manifest: dict[str, Any], splits: dict[str, dict[str, Any]], download: int,
          license: str) -> Any:
    from huggingface_hub import DatasetCard, DatasetCardData  # imported here: only export needs it

    train = splits["train"]
    configs = [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}]
    infos = [{"config_name": "default", "features": [{"name": f.name, **_features(f.type)} for f in EXPORT_SCHEMA],
              "splits": [{"name": "train", "num_bytes": train["nbytes"], "num_examples": train["rows"]}],
              "dataset_size": train["nbytes"]}]
    if "rejected" in splits:
        rej = splits["rejected"]
        configs.append({"config_name": "rejected", "data_files": [{"split": "train", "path": "data/rejected-*"}]})
        infos.append({"config_name": "rejected",
                      "features": [{"name": f.name, **_features(f.type)} for f in REJECTED_SCHEMA],
                      "splits": [{"name": "train", "num_bytes": rej["nbytes"], "num_examples": rej["rows"]}],
                      "dataset_size": rej["nbytes"]})
    infos[0]["download_size"] = download
    data = DatasetCardData(
        license=license,
        language=_languages(train["texts"]),
        source_datasets=_source_datasets(manifest.get("config", {})),
        size_categories=[size_category(train["rows"])],
        task_categories=["text-generation"],
        tags=TAGS,
        pretty_name=run_dir.name,
        configs=configs,
        dataset_info=infos[0] if len(infos) == 1 else infos,
    )
    return DatasetCard(f"---\n{data.to_yaml()}\n---\n\n" + _card_body(run_dir, manifest, splits))


def _write_split(tmp: Path, prefix: str, inputs: list[Path], shard_rows: int, run_dir: Path) -> dict[str, Any]:
    """One split's rows as data/{prefix}-NNNNN-of-MMMMM.parquet, one input shard and one output file in memory
    at a time."""
    schema = EXPORT_SCHEMA if prefix == "train" else REJECTED_SCHEMA
    # File names carry the file count, so count rows first (Parquet footers only: cheap).
    total = sum(pq.ParquetFile(p).metadata.num_rows for p in inputs)
    n_files = max(1, math.ceil(total / shard_rows))
    out: dict[str, Any] = {"rows": total, "files": [], "tokens": [], "chars": [], "nbytes": 0, "model": None,
                           "texts": []}

    def flush(rows: list[dict[str, Any]]) -> None:
        name = f"data/{prefix}-{len(out['files']):05d}-of-{n_files:05d}.parquet"
        table = pa.Table.from_pylist(rows, schema=schema)
        pq.write_table(table, tmp / name, row_group_size=ROW_GROUP)  # default snappy: every reader has it
        out["nbytes"] += table.nbytes
        out["files"].append(name)

    buffer: list[dict[str, Any]] = []
    seen = 0
    for path in inputs:
        for row in shards.read_shard(path).to_pylist():
            buffer.append(_export_row(row, schema))
            seen += 1
            out["model"] = out["model"] or row.get("model")
            if row.get("completion_tokens") is not None:
                out["tokens"].append(row["completion_tokens"])
            out["chars"].append(len(row.get("reasoning") or ""))
            if len(out["texts"]) < LANGUAGE_SAMPLE:
                out["texts"].append(row.get("problem") or "")
            if len(buffer) == shard_rows:
                flush(buffer)
                buffer = []
    if buffer or not out["files"]:
        flush(buffer)
    if seen != total or len(out["files"]) != n_files:
        raise FactoryError(f"{run_dir}: the {prefix} shards changed during the export; run it again")
    return out


def export_run(run_dir: Path, to: Path, shard_rows: int = 100_000, license: str = "apache-2.0",
               rejected: bool = False) -> dict[str, Any]:
    """Write the run's curated samples (and with `rejected`, the rejected ones with their reasons, as a
    second config) and a dataset card to `to`, atomically; return a summary."""
    run_dir, to = Path(run_dir), Path(to)
    manifest = shards.read_manifest(run_dir)
    inputs = shards.readable_shards(run_dir, "curated")
    if not inputs:
        raise FactoryError(f"{run_dir}: no curated samples to export; filter it first: factory filter {run_dir}")
    if shard_rows < 1:
        raise FactoryError(f"shard_rows {shard_rows} must be at least 1")
    if to.exists() and (not to.is_dir() or (any(to.iterdir()) and not _is_export(to))):
        raise FactoryError(f"{to} exists and is not an earlier export; choose another folder or remove it")
    rejected_inputs = shards.readable_shards(run_dir, "rejected") if rejected else []
    to.parent.mkdir(parents=True, exist_ok=True)
    for leftover in [*to.parent.glob(f".{to.name}.*.tmp"), *to.parent.glob(f".{to.name}.*.old")]:
        shutil.rmtree(leftover, ignore_errors=True)  # an earlier export killed before it could clean up
    tmp = Path(tempfile.mkdtemp(dir=to.parent, prefix=f".{to.name}.", suffix=".tmp"))
    try:
        (tmp / "data").mkdir()
        train = _write_split(tmp, "train", inputs, shard_rows, run_dir)
        splits = {"train": train}
        if rejected:
            splits["rejected"] = _write_split(tmp, "rejected", rejected_inputs, shard_rows, run_dir)
        files = [f for split in splits.values() for f in split["files"]]
        download = sum((tmp / f).stat().st_size for f in files)
        _card(run_dir, manifest, splits, download, license).save(tmp / "README.md")
        _swap_into_place(tmp, to)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    result = {"rows": train["rows"], "files": [*files, "README.md"], "path": str(to)}
    if rejected:
        result["rejected_rows"] = splits["rejected"]["rows"]
    return result


# ---------------------------------------------------------------- upload


def _endpoint(endpoint: str | None) -> str:
    # Read HF_ENDPOINT now: huggingface_hub reads it once, at import.
    return (endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def _token(token: str | None) -> str:
    from huggingface_hub import get_token

    token = token or get_token()  # HF_TOKEN, then the token `hf auth login` stored
    if not token:
        raise FactoryError(f"no Hugging Face token found: {LOGIN}")
    return token


def check_token(token: str | None = None, endpoint: str | None = None) -> str:
    """The Hub user name the token belongs to; FactoryError if there is none or the Hub rejects it.

    Cheap (one request), so callers run it before a long export. Messages never include the token.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    url, token = _endpoint(endpoint), _token(token)
    try:
        info = HfApi(endpoint=url).whoami(token=token)
    except HfHubHTTPError as e:
        status = e.response.status_code if e.response is not None else None
        if status == 401:
            raise FactoryError(f"{url} rejected the Hugging Face token (401): {LOGIN}") from None
        raise FactoryError(f"{url}: checking the token failed with HTTP {status}; try again later") from None
    except Exception as e:  # transport errors (refused, DNS, TLS) come from huggingface_hub's own HTTP client
        raise FactoryError(f"cannot reach {url} ({type(e).__name__}); check the network or HF_ENDPOINT") from None
    return str(info.get("name") or "")


def upload(folder: Path, repo_id: str, private: bool = False, token: str | None = None,
           endpoint: str | None = None) -> str:
    """Create the dataset repo if needed and upload an export folder to it; return the repo's URL."""
    from huggingface_hub import HfApi

    url = _endpoint(endpoint)
    token = _token(token)
    user = check_token(token, url)  # before anything else: a bad token fails in a second
    folder = Path(folder)
    if not _is_export(folder) or not any((folder / "data").glob("train-*.parquet")):
        raise FactoryError(f"{folder}: not a dataset export (README.md + data/train-*.parquet); export the run first")
    if "/" not in repo_id:
        repo_id = f"{user}/{repo_id}"  # what the Hub would do, made explicit so every call agrees
    api = HfApi(endpoint=url, token=token, library_name="reasoning-factory", library_version=__version__)
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        api.upload_folder(folder_path=folder, repo_id=repo_id, repo_type="dataset",
                          commit_message="Upload dataset exported by reasoning-factory")
    except Exception as e:  # HTTP errors, a card the Hub refuses (ValueError), a dropped connection
        first = (str(e).strip().splitlines() or [""])[0]
        raise FactoryError(f"uploading to {repo_id} on {url} failed: {type(e).__name__}: {first}") from None
    return f"{url}/datasets/{repo_id}"
