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

from factory import __version__, shards
from factory.chain import FILTER_MANIFEST
from factory.errors import FactoryError
from factory.funnel import compute_funnel
from factory.sample import SCHEMA
from factory.train.data import sample_to_messages

MESSAGES = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
EXPORT_SCHEMA = pa.schema(
    [("messages", MESSAGES)]
    + [(c, pa.string()) for c in ("reasoning", "final", "answer", "problem", "problem_id", "id")]
    + [(c, pa.string()) for c in ("source", "task", "template", "model")]
    + [("completion_tokens", pa.int32()), ("scores", pa.string())]
)
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


def _export_row(row: dict[str, Any]) -> dict[str, Any]:
    out = {name: row.get(name) for name in EXPORT_SCHEMA.names}
    out["messages"] = sample_to_messages(row)  # the prefill goes into the assistant turn, as SFT trains it
    return out


def _features(t: pa.DataType) -> dict[str, Any]:
    """The card's `dataset_info` form of an Arrow type (only what EXPORT_SCHEMA uses)."""
    if pa.types.is_list(t):
        return {"list": [{"name": f.name, **_features(f.type)} for f in t.value_type]}
    return {"dtype": str(t)}


def _is_export(path: Path) -> bool:
    data = path / "data"
    return (path / "README.md").is_file() and data.is_dir() and all(f.name.startswith("train-") for f in data.iterdir())


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


def _card_body(run_dir: Path, manifest: dict[str, Any], rows: int, model: str | None,
               tokens: list[int], chars: list[int]) -> str:
    config = manifest.get("config", {})
    model = config.get("model") or model or "unknown"
    sampling = config.get("sampling") or {}
    funnel = compute_funnel(run_dir)  # from the shard markers: always matches the shards on disk
    lines = [
        f"# {run_dir.name}",
        "",
        f"{rows} synthetic reasoning samples in the style of DeepSeek-R1, made by rejection sampling: "
        f"the model `{model}` wrote several completions per problem and a chain of filters kept the "
        "correct, well-formed ones. `messages` is a chat example (user: the problem; assistant: the "
        "full completion, reasoning and final answer) ready for SFT; `reasoning` and `final` hold its parts.",
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
        "```",
        "",
        f"Made with reasoning-factory {__version__}.",
    ]
    return "\n".join(lines) + "\n"


def _card(run_dir: Path, manifest: dict[str, Any], rows: int, model: str | None, tokens: list[int],
          chars: list[int], nbytes: int, download: int, license: str) -> Any:
    from huggingface_hub import DatasetCard, DatasetCardData  # imported here: only export needs it

    data = DatasetCardData(
        license=license,
        size_categories=[size_category(rows)],
        task_categories=["text-generation"],
        tags=TAGS,
        pretty_name=run_dir.name,
        configs=[{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}],
        dataset_info={
            "features": [{"name": f.name, **_features(f.type)} for f in EXPORT_SCHEMA],
            "splits": [{"name": "train", "num_bytes": nbytes, "num_examples": rows}],
            "download_size": download,
            "dataset_size": nbytes,
        },
    )
    return DatasetCard(f"---\n{data.to_yaml()}\n---\n\n" + _card_body(run_dir, manifest, rows, model, tokens, chars))


def export_run(run_dir: Path, to: Path, shard_rows: int = 100_000, license: str = "apache-2.0") -> dict[str, Any]:
    """Write the run's curated samples and a dataset card to `to`, atomically; return a summary."""
    run_dir, to = Path(run_dir), Path(to)
    manifest = shards.read_manifest(run_dir)
    inputs = shards.readable_shards(run_dir, "curated")
    if not inputs:
        raise FactoryError(f"{run_dir}: no curated samples to export; filter it first: factory filter {run_dir}")
    if shard_rows < 1:
        raise FactoryError(f"shard_rows {shard_rows} must be at least 1")
    if to.exists() and (not to.is_dir() or (any(to.iterdir()) and not _is_export(to))):
        raise FactoryError(f"{to} exists and is not an earlier export; choose another folder or remove it")
    # File names carry the file count, so count rows first (Parquet footers only: cheap).
    total = sum(pq.ParquetFile(p).metadata.num_rows for p in inputs)
    n_files = max(1, math.ceil(total / shard_rows))
    to.parent.mkdir(parents=True, exist_ok=True)
    for leftover in [*to.parent.glob(f".{to.name}.*.tmp"), *to.parent.glob(f".{to.name}.*.old")]:
        shutil.rmtree(leftover, ignore_errors=True)  # an earlier export killed before it could clean up
    tmp = Path(tempfile.mkdtemp(dir=to.parent, prefix=f".{to.name}.", suffix=".tmp"))
    files: list[str] = []
    tokens: list[int] = []
    chars: list[int] = []
    nbytes, model = 0, None

    def flush(rows: list[dict[str, Any]]) -> None:
        nonlocal nbytes
        name = f"data/train-{len(files):05d}-of-{n_files:05d}.parquet"
        table = pa.Table.from_pylist(rows, schema=EXPORT_SCHEMA)
        pq.write_table(table, tmp / name, row_group_size=ROW_GROUP)  # default snappy: every reader has it
        nbytes += table.nbytes
        files.append(name)

    try:
        (tmp / "data").mkdir()
        buffer: list[dict[str, Any]] = []
        for path in inputs:  # one input shard and one output file in memory at a time
            for row in shards.read_shard(path).to_pylist():
                buffer.append(_export_row(row))
                model = model or row.get("model")
                if row.get("completion_tokens") is not None:
                    tokens.append(row["completion_tokens"])
                chars.append(len(row.get("reasoning") or ""))
                if len(buffer) == shard_rows:
                    flush(buffer)
                    buffer = []
        if buffer or not files:
            flush(buffer)
        if len(chars) != total or len(files) != n_files:
            raise FactoryError(f"{run_dir}: the curated shards changed during the export; run it again")
        download = sum((tmp / f).stat().st_size for f in files)
        _card(run_dir, manifest, total, model, tokens, chars, nbytes, download, license).save(tmp / "README.md")
        _swap_into_place(tmp, to)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"rows": total, "files": [*files, "README.md"], "path": str(to)}


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
