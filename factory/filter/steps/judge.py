"""`judge`: a quality score from a judge model through the `judge` template and a backend.

A global step because it needs one model for all samples: the kept samples are rendered
with the judge template and generated in one backend call; the score is kept in
`scores.judge` and samples below the threshold are rejected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import duckdb
import pyarrow as pa

from factory.core.errors import FactoryError
from factory.core.settings import setting
from factory.filter.steps.global_steps import GlobalResult, GlobalStep
from factory.generate.base import BACKEND_DEFAULTS, BACKENDS, BackendName


@dataclass
class Judge(GlobalStep):
    name = "judge"
    description = "Score each kept sample with a judge model (judge template); reject below min_score."
    reasons = ("low_judge_score", "judge_unparsed", "judge_error")
    model: str = setting("", "judge model: folder or hub id (vllm) or served name (openai)")
    backend: BackendName = setting("vllm", " or ".join(BACKENDS))
    base_url: str = setting(BACKEND_DEFAULTS.base_url, "openai backend: API root")
    template: str = setting("judge", "template that asks for 'Score: N'")
    min_score: float = setting(6.0, "lowest score kept")
    max_tokens: int = setting(512, "tokens for the judge's answer")
    prompt_mode: Literal["auto", "chat", "base"] = setting("auto", "chat, base or auto")

    def validate(self) -> None:
        if not self.model and self.backend != "openai":
            raise FactoryError("set 'model' to the judge model")

    def run(self, con: duckdb.DuckDBPyConnection) -> GlobalResult:
        from factory.core.problem import Problem
        from factory.core.sample import Sampling
        from factory.generate.base import open_backend
        from factory.prompting.prompter import Prompter
        from factory.prompting.templates import load_template

        rows = con.execute("SELECT id, problem, answer, task, completion FROM kept ORDER BY id").fetchall()
        if not rows:
            return GlobalResult(_rejections([]))
        template = load_template(self.template)
        backend = open_backend(self.backend, self.model, {"base_url": self.base_url, "seed": 0})
        try:
            prompter = Prompter.for_model(template, self.prompt_mode, backend.has_chat_template)
            requests = [
                prompter.request(Problem(problem_id=id_, problem=problem, answer=answer, task=task or "math",
                                         context={"completion": completion or ""}))
                for id_, problem, answer, task, completion in rows
            ]
            outputs = backend.generate(requests, Sampling(temperature=0.0, top_p=1.0, max_tokens=self.max_tokens, n=1),
                                       template.stop, lambda _s, _t: None)
        finally:
            backend.close()
        rejects: list[tuple[str, str]] = []
        scores = {}
        for (id_, *_), (c,) in zip(rows, outputs):
            if c.error:
                rejects.append((id_, f"judge_error: {c.error[:100]}"))
                continue
            parsed = prompter.parse(c.text, chat_prefill=backend.chat_prefill)
            if parsed.final is None:
                rejects.append((id_, "judge_unparsed: no 'Score: N' in the judge's answer"))
                continue
            score = float(parsed.final)
            scores[id_] = {"judge": score}
            if score < self.min_score:
                rejects.append((id_, f"low_judge_score: {score:g} < {self.min_score:g}"))
        return GlobalResult(_rejections(rejects), scores)


def _rejections(rejects: list[tuple[str, str]]) -> pa.Table:
    return pa.table({"id": pa.array([i for i, _ in rejects], pa.string()),
                     "reason": pa.array([r for _, r in rejects], pa.string())})
