"""Distillation in miniature: does curation make a better student?

The shipped teacher (data/teacher-model: the tiny model trained longer) answers fresh arithmetic
problems, 4 samples each; the `distill_rejection_sampling` chain keeps the right ones, then one per
problem (R1's rejection sampling); the student (data/tiny-model) is fine-tuned (a) on the curated
samples, (b) on as many problems each with one of its samples drawn at random, right or wrong
(unfiltered), (c) not at all. Each arm's sampled pass@1 on 500 held-out problems, for every seed
(the seed orders the SFT data, draws the unfiltered set and seeds the evaluation's sampling).

    python bench/distill.py            # the full budget: 20000 problems x 4, 4 epochs, 3 seeds (~75 min on 2 cores)
    python bench/distill.py --problems 3000 --seeds 0 --epochs 2     # a few minutes
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.gains import REPO, factory, held_out, table  # noqa: E402


def unfiltered_file(runs: Path, run: str, count: int, seed: int, out: Path) -> Path:
    """`count` problems drawn at random, each with one of its samples drawn at random, right or wrong,
    as SFT messages: what the teacher gives without rejection sampling."""
    from factory.core import shards
    from factory.train.data import sample_to_messages

    rng = random.Random(seed)
    by_problem: dict[str, list[dict]] = {}
    for row in shards.read_samples(runs / run, "generated"):
        by_problem.setdefault(row["problem_id"], []).append(row)
    picked = [rng.choice(by_problem[p]) for p in rng.sample(sorted(by_problem), count)]
    out.write_text("".join(json.dumps({"messages": sample_to_messages(r)}) + "\n" for r in picked))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problems", type=int, default=20000, help="fresh problems the teacher answers")
    ap.add_argument("--n", type=int, default=4, help="teacher samples per problem; the chain keeps one right one")
    ap.add_argument("--temperature", type=float, default=0.7, help="the teacher's sampling temperature")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--work", type=Path, default=REPO / "build" / "bench-distill", help="runs and models go here")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    runs, run = args.work / "runs", "teacher-samples"
    runs.mkdir(parents=True, exist_ok=True)

    teacher, student = REPO / "data" / "teacher-model", REPO / "data" / "tiny-model"
    factory("generate", run, "--model", teacher, "--problems", f"builtin:arithmetic?n={args.problems}&seed=21",
            "--template", "arithmetic_r1", "--n", args.n, "--temperature", args.temperature, "--max-tokens", 128,
            runs=runs)
    factory("filter", run, "--chain", "distill_rejection_sampling", runs=runs)
    funnel = json.loads((runs / run / "funnel.json").read_text())
    kept = funnel["kept"]
    print(f"teacher: {funnel['generated']} samples, {kept} kept by `distill_rejection_sampling`", flush=True)

    results: dict[str, list[float]] = {"none (the student)": [], "unfiltered": [], "curated": [], "teacher": []}
    errors: dict[str, list[float]] = {arm: [] for arm in results}
    for seed in seeds:
        data = {"curated": str(runs / run),
                "unfiltered": str(unfiltered_file(runs, run, kept, seed, args.work / f"unfiltered-{seed}.jsonl"))}
        arms = {"none (the student)": student, "teacher": teacher}
        for arm, source in data.items():
            out = args.work / f"student-{arm}-{seed}"
            factory("train", "sft", "--data", source, "--model", student, "--out", out, "--batch-size", 32,
                    "--lr", args.lr, "--warmup-steps", 20, "--epochs", args.epochs, "--max-len", 256, "--seed", seed,
                    "--log-every", 1000, runs=runs)
            arms[arm] = out
        for arm, model in arms.items():
            r = held_out(model, seed, runs)
            results[arm].append(r["pass@1"])
            errors[arm].append(r["pass@1_se"])
            print(f"seed {seed} {arm}: pass@1 {r['pass@1']:.3f} ± {r['pass@1_se']:.3f}", flush=True)

    print(table(results, {arm: statistics.mean(v) for arm, v in errors.items()}))
    start, cur, unf = (statistics.mean(results[a]) for a in ("none (the student)", "curated", "unfiltered"))
    print(f"curated - unfiltered: {cur - unf:+.3f} (curated's worst seed {min(results['curated']):.3f}, unfiltered's "
          f"best {max(results['unfiltered']):.3f}); curated - start: {cur - start:+.3f} (target: beyond the seeds' "
          f"spread, and +0.15)")


if __name__ == "__main__":
    main()
