"""Chains from YAML and the chain runner over a run's shards: accounting, resume, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from factory.core import shards
from factory.core.errors import FactoryError
from factory.core.sample import SCHEMA, stable_hash, to_table
from factory.filter.chain import load_chain, run_chain
from factory.problems import arithmetic
from tests.synthetic_runs import write_run


def make_run(run: Path, problems: int = 24, per_shard: int = 6) -> list[dict]:
    """A run whose samples are right, wrong, duplicated, cut off and mixed-language by design."""
    samples = []
    for k, p in enumerate(arithmetic.generate(problems, seed=1)):
        pid = stable_hash("arithmetic", p.expression)
        for i in range(4):
            steps = "\n".join(p.steps)
            answer = p.answer if i in (0, 2) else p.answer + 1  # samples 0 and 2 are identical and right
            completion = f"<think>\n{steps}\n</think>\n<answer>{answer}</answer>"
            if i == 3 and k % 3 == 0:
                completion = (f"<think>{steps}\n我们先计算乘法，然后计算加法，所以答案是正确的。</think>"
                              f"<answer>{p.answer}</answer>")
            if i == 1 and k % 4 == 0:
                completion = "<think>" + steps
            samples.append(dict(problem_id=pid, sample_index=i, problem=arithmetic.question(p), answer=str(p.answer),
                                completion=completion))
    return write_run(run, samples, per_shard * 4, config={"test": True}, fingerprint="fp")


def all_rows(run: Path, stage: str) -> list[dict]:
    return shards.read_table(run, stage).to_pylist()


def test_cold_start_accounting_and_reasons(tmp_path: Path):
    rows = make_run(tmp_path / "r")
    funnel = run_chain(tmp_path / "r", load_chain("cold_start"), workers=2)
    kept, rejected = all_rows(tmp_path / "r", "curated"), all_rows(tmp_path / "r", "rejected")
    assert len(kept) + len(rejected) == len(rows) == funnel["generated"]
    assert {r["id"] for r in kept} | {r["id"] for r in rejected} == {r["id"] for r in rows}
    assert not {r["id"] for r in kept} & {r["id"] for r in rejected}
    for step in funnel["steps"]:  # in = kept + rejected at every step
        assert step["in"] == step["kept"] + sum(step["rejected"].values())
    steps = {s["step"]: s for s in funnel["steps"]}
    assert steps["parsed"]["rejected"] == {"truncated": 6}  # cut off: its own reason, before any parse error
    assert steps["correct"]["rejected"] == {"wrong_answer": 18 + 16}  # sample 1 unless cut off, sample 3 unless mixed
    language = steps["language"]["rejected"]
    assert language.get("language_mismatch", 0) + language.get("mixed_language", 0) == 8
    assert steps["dedup"]["rejected"] == {"exact_duplicate": 24}  # samples 0 and 2 are the same text
    assert len(kept) == 24 and all(r["final"] == r["answer"] for r in kept)
    assert len({r["problem_id"] for r in kept}) == 24  # one kept per problem
    for r in rejected:
        assert r["rejected_by"] in steps and r["reason"].split(":")[0] in steps[r["rejected_by"]]["rejected"]
        assert r["problem"] and r["completion"] is not None  # all columns kept
    assert all(json.loads(r["scores"])["correct"] == 1.0 for r in kept)
    assert json.loads((tmp_path / "r" / "funnel.json").read_text()) == funnel


def test_rerun_skips_filtered_shards_and_other_chain_needs_redo(tmp_path: Path):
    run = tmp_path / "r"
    make_run(run)
    run_chain(run, load_chain("cold_start"), workers=1)
    before = {p: p.stat().st_mtime_ns for p in shards.done_shards(run, "curated")}
    run_chain(run, load_chain("cold_start"), workers=1)
    assert {p: p.stat().st_mtime_ns for p in shards.done_shards(run, "curated")} == before
    with pytest.raises(FactoryError, match="filtered with chain 'cold_start'.*--redo"):
        run_chain(run, load_chain("distill"))
    funnel = run_chain(run, load_chain("distill"), redo=True, workers=1)
    assert [s["step"] for s in funnel["steps"]][-1] == "dedup"
    assert funnel["generated"] == funnel["kept"] + funnel["rejected"]


def test_killed_shard_is_redone(tmp_path: Path):
    run = tmp_path / "r"
    make_run(run)
    run_chain(run, load_chain("distill"), workers=1)
    first = shards.shard_path(run, "curated", 0)
    shards.marker_path(first).unlink()  # as if killed before the marker
    (run / "curated" / ".shard-00000.parquet.x.tmp").write_text("partial")
    funnel = run_chain(run, load_chain("distill"), workers=1)
    assert shards.is_done(first) and not list((run / "curated").glob(".*.tmp"))
    assert funnel["generated"] == funnel["kept"] + funnel["rejected"] == 96


def test_global_step_resumes_from_its_rejected_file(tmp_path: Path):
    run = tmp_path / "r"
    make_run(run)
    run_chain(run, load_chain("cold_start"), workers=1)
    kept_before = len(all_rows(run, "curated"))
    # Simulate a crash after the dedup rejects were written but before they were applied.
    applied = run / "rejected" / "global-00-dedup.applied"
    applied.unlink()
    dedup_ids = set(pq.read_table(run / "rejected" / "global-00-dedup.parquet")["id"].to_pylist())
    victim = shards.done_shards(run, "rejected")[0]
    restored = pq.read_table(run / "rejected" / "global-00-dedup.parquet").slice(0, 1)
    curated0 = shards.shard_path(run, "curated", 0)
    import pyarrow as pa

    table = pa.concat_tables([pq.read_table(curated0, schema=SCHEMA), restored.cast(SCHEMA)])
    shards.write_shard(curated0, table, {"steps": json.loads(shards.marker_path(curated0).read_text())["steps"]})
    assert victim.exists()
    run_chain(run, load_chain("cold_start"), workers=1)
    kept = all_rows(run, "curated")
    assert len(kept) == kept_before and not {r["id"] for r in kept} & dedup_ids


def test_select_band_and_per_problem_limit(tmp_path: Path):
    run = tmp_path / "r"
    make_run(run)
    (tmp_path / "c.yaml").write_text(
        "name: c\ndescription: d\nsteps:\n  - correct\n  - select: {min_pass_rate: 0.6, max_pass_rate: 1.0}\n"
        "  - select: {max_per_problem: 1, order: random, seed: 3}\n"
    )
    funnel = run_chain(run, load_chain(str(tmp_path / "c.yaml")), workers=1)
    kept = all_rows(run, "curated")
    # Pass rate is 3/4 where sample 3 is the right mixed-language one (k % 3 == 0), else 2/4.
    assert len({r["problem_id"] for r in kept}) == 8 and len(kept) == 8
    select = [s for s in funnel["steps"] if s["step"].startswith("select")]
    assert select[0]["rejected"] == {"pass_rate_out_of_band": 32}
    assert select[1]["rejected"] == {"over_per_problem_limit": 16}


def test_corrupt_shard_is_a_clear_error(tmp_path: Path):
    run = tmp_path / "r"
    make_run(run)
    shards.shard_path(run, "generated", 1).write_bytes(b"not parquet")
    with pytest.raises(FactoryError, match=r"shard-00001.parquet: cannot read shard"):
        run_chain(run, load_chain("distill"), workers=1)


@pytest.mark.parametrize("body, message", [
    ("name: x\nsteps:\n  - sparkle\n", "unknown step 'sparkle'; the steps are parsed, complete"),
    ("name: x\nsteps:\n  - length: {max_len: 3}\n",
     "step 1 (length): unknown setting 'max_len'; the settings are: min_completion_tokens"),
    ("name: x\nsteps:\n  - length: {max_completion_tokens: lots}\n",
     "max_completion_tokens='lots' is not valid: expected a whole number"),
    ("name: x\nsteps:\n  - dedup\n  - parsed\n", "is per-sample but comes after a global step"),
    ("name: x\nsteps: []\n", "non-empty 'steps' list"),
    ("name: x\nsteps:\n  - {parsed: {}, complete: {}}\n", "one-key mapping"),
    ("name: [x\n", "not valid YAML"),
    ("name: x\nsteps:\n  - decontaminate\n", "name at least one benchmark file"),
])
def test_bad_chain_files(tmp_path: Path, body: str, message: str):
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    with pytest.raises(FactoryError) as e:
        load_chain(str(path))
    assert message in str(e.value) and "bad.yaml" in str(e.value)


def test_unknown_chain_name_lists_chains():
    with pytest.raises(FactoryError, match="unknown chain 'nope': the chains are cold_start, distill, "
                                           "distill_rejection_sampling, grpo_prompts"):
        load_chain("nope")


def test_cli_filter_funnel_chains(tmp_path: Path, cli):
    run = tmp_path / "r"
    make_run(run)
    result = cli("filter", str(run), "--chain", "distill", "--workers", "1")
    assert result.exit_code == 0, result.output
    assert "generated 96 = kept" in result.output and "exact_duplicate" in result.output
    assert cli("funnel", str(run)).output.count("correct") == 1
    listing = cli("chains")
    assert all(n in listing.output
               for n in ("cold_start", "distill", "grpo_prompts", "readability", "max_paragraph_chars"))
    bad = cli("filter", str(tmp_path / "nope"))
    assert bad.exit_code == 2 and "not a run folder" in bad.output


def test_select_counts_a_refine_runs_inputs_by_the_problem_they_came_from(tmp_path: Path):
    run = tmp_path / "refined"
    rows = make_run(run, problems=6, per_shard=6)
    # As a refine run: each input is an earlier sample (its own problem_id), from 6 origin problems.
    for r in rows:
        origin = r["problem_id"]
        r["problem_id"] = r["id"]
        r["metadata"] = json.dumps({"prefill": "", "context": {"origin_problem_id": origin}})
    shards.write_shard(shards.shard_path(run, "generated", 0), to_table(rows), {})
    chain = tmp_path / "pick.yaml"
    chain.write_text("name: pick\nsteps:\n  - select: {max_per_problem: 1}\n")
    funnel = run_chain(run, load_chain(str(chain)))
    kept = all_rows(run, "curated")
    assert funnel["kept"] == len(kept) == 6  # one per origin problem, not one per input (24)
    assert len({json.loads(r["metadata"])["context"]["origin_problem_id"] for r in kept}) == 6
