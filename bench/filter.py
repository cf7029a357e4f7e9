"""The default chain's throughput against a single-process math-verify loop, side by side.

The baseline is how open-r1's accuracy reward checks samples: one process, one sample at
a time, math-verify parsing the gold and the whole completion. Ours is `factory filter
--chain cold_start` on the same samples written as a run (all per-sample steps in worker
processes on every core, then dedup and select in DuckDB), shards read and written included.

    python bench/filter.py                 # 20000 samples
    python bench/filter.py --samples 1000
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # factory and tests/, run from anywhere

SENTENCES = [
    "We first restate the problem in our own words and list what is known.",
    "Then we check each quantity carefully, keeping track of every intermediate value.",
    "A fraction stays the same when numerator and denominator share no common factor.",
    "Let me double check the arithmetic by multiplying back.",
    "Both numbers are positive, so the result is positive as well.",
    "It helps to write the division as a ratio before simplifying anything.",
    "Wait, I should verify that the denominator is not zero.",
    "The greatest common divisor decides whether any cancellation is possible.",
]


def make_samples(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        if i % 4 == 0:  # a problem has 4 samples, as with --n 4
            a, b = rng.randint(1, 97), rng.randint(2, 99)
        gold = f"\\frac{{{a}}}{{{b}}}"
        right = rng.random() < 0.6
        shown = gold if right else f"\\frac{{{a + 1}}}{{{b}}}"
        steps = " ".join(rng.sample(SENTENCES, rng.randint(3, 8)) + rng.sample(SENTENCES, 4))
        reasoning = f"{steps} Dividing {a} by {b} gives the fraction ${shown}$, which is already in lowest terms."
        rows.append({"id": f"s{i:06d}", "problem_id": f"p{i // 4:06d}", "problem": f"Write {a}/{b} as a fraction.",
                     "answer": gold, "completion": f"<think>{reasoning}</think><answer>$\\boxed{{{shown}}}$</answer>"})
    return rows


def baseline(rows: list[dict]) -> None:
    t0 = time.perf_counter()
    from math_verify import LatexExtractionConfig, parse, verify
    from math_verify.parser import NormalizationConfig

    config = [LatexExtractionConfig(
        normalization_config=NormalizationConfig(nits=False, malformed_operators=False, basic_latex=True,
                                                 equations=True, boxed="all", units=True),
        boxed_match_priority=0, try_extract_without_anchor=False)]
    for r in rows:
        gold = parse(f"${r['answer']}$", extraction_mode="first_match")
        answer = parse(r["completion"], extraction_config=config, extraction_mode="first_match")
        float(verify(gold, answer)) if gold else 1.0
    print(time.perf_counter() - t0)


def write_run(rows: list[dict], run: Path, per_shard: int = 500) -> None:
    from tests.synthetic_runs import write_run as write_synthetic_run

    samples = [{**r, "sample_index": int(r["id"][1:]) % 4, "source": "bench", "task": "math", "prompt": r["problem"],
                "prompt_tokens": 20, "completion_tokens": len(r["completion"]) // 4} for r in rows]
    write_synthetic_run(run, samples, per_shard, config={"bench": True}, fingerprint="bench", model="bench")


def timed(cmd: list[str]) -> tuple[float, str]:
    """Wall time of a fresh process: imports and worker start-up count, as for a user."""
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return time.perf_counter() - t0, out.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=20000)
    ap.add_argument("--baseline", help=argparse.SUPPRESS)  # internal: run the baseline loop on this file
    args = ap.parse_args()
    if args.baseline:
        return baseline(json.loads(Path(args.baseline).read_text()))
    rows = make_samples(args.samples)
    work = Path(tempfile.mkdtemp(prefix="bench-filter-"))
    write_run(rows, work / "run")
    (work / "rows.json").write_text(json.dumps(rows))
    t_base, _ = timed([sys.executable, __file__, "--baseline", str(work / "rows.json")])
    t_ours, _ = timed([sys.executable, "-m", "factory.cli", "filter", str(work / "run"), "--chain", "cold_start"])
    funnel = json.loads((work / "run" / "funnel.json").read_text())
    correct = next(s for s in funnel["steps"] if s["step"] == "correct")
    print(f"{len(rows)} samples; cold_start kept {funnel['kept']}; "
          f"its correct step kept {correct['kept']} of {correct['in']}")
    print(f"single-process math-verify loop (open-r1 style): "
          f"{len(rows) / t_base:7.0f} samples/s ({t_base:.2f} s)")
    print(f"factory filter --chain cold_start ({os.cpu_count()} cores): "
          f"{len(rows) / t_ours:7.0f} samples/s ({t_ours:.2f} s)")
    print(f"ratio {t_base / t_ours:.2f}x")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
