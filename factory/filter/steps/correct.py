"""`correct`: the final answer checked by the shared verifiers, or by majority vote."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from factory.core.settings import setting
from factory.core.textnorm import normalize
from factory.filter.steps.base import Filter, Outcome, Reject
from factory.verify.registry import verify_sample


@dataclass
class Correct(Filter):
    name = "correct"
    description = ("Final answer verified against the gold answer (math-verify, sandboxed tests, task checkers); "
                   "without gold, majority vote over the problem's samples.")
    reasons = ("wrong_answer", "no_answer", "timeout", "unparsable_answer", "unparsable_gold", "runtime_error",
               "wrong_output", "no_code", "no_tests", "bad_tests", "memory_limit", "output_limit", "file_size_limit",
               "verifier_error", "not_majority", "no_majority")
    timeout_s: float = setting(5.0, "time limit per sample for the verifier")
    majority_without_gold: bool = setting(True, "judge samples without a gold answer by majority vote")
    min_majority: float = setting(0.5, "share of a problem's answers the majority answer needs (majority vote)")
    reject: bool = setting(True, "reject wrong samples; false only scores them (scores.correct)")

    def prepare(self, samples: list[dict[str, Any]]) -> None:
        finals: dict[str, list[str]] = defaultdict(list)
        for s in samples:
            if not s.get("answer") and s.get("final"):
                finals[s["problem_id"]].append(normalize(s["final"]))
        self._majority: dict[str, tuple[str, float]] = {}
        for pid, answers in finals.items():
            answer, count = Counter(answers).most_common(1)[0]
            self._majority[pid] = (answer, count / len(answers))

    def screen(self, s: dict[str, Any]) -> Outcome:
        # A gym task's scorer judges from the problem's metadata, gold answer or not (a graph
        # colouring has many right answers and none stored).
        gym_task = str(s.get("task") or "").startswith("gym:")
        if not s.get("answer") and not s.get("tests") and not gym_task and self.majority_without_gold:
            verdict_reason = self._vote(s)
        else:
            v = verify_sample(s, timeout_s=self.timeout_s)
            verdict_reason = None if v.ok else Reject(v.reason or "wrong_answer", v.detail)
        scores = {"correct": 0.0 if verdict_reason else 1.0}
        return Outcome(verdict_reason if self.reject else None, scores)

    def _vote(self, s: dict[str, Any]) -> Reject | None:
        majority = getattr(self, "_majority", {}).get(s["problem_id"])
        if majority is None or not s.get("final"):
            return Reject("no_answer")
        answer, share = majority
        if share < self.min_majority:
            return Reject("no_majority", f"top answer has {share:.0%} of votes")
        if normalize(s["final"]) != answer:
            return Reject("not_majority", f"majority answer is {answer[:40]!r}")
        return None
