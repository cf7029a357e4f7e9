"""reasoning-gym as a source: every registered dataset makes problems whose gold answer, written as a
model writes it, scores 1 and an obviously wrong answer 0 in all three answer paths (the `correct`
filter on generated rows, the GRPO accuracy reward on rollouts, `factory eval`'s scoring); the
datasets that cannot are listed with the reason, and the list is exact."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import reasoning_gym
from reasoning_gym.factory import DATASETS

from factory.core import shards
from factory.core.errors import FactoryError
from factory.core.sample import Sampling, to_table
from factory.filter.steps.correct import Correct
from factory.generate.base import Completion
from factory.generate.evaluate import score_samples
from factory.generate.runner import GenerateConfig, run_generation, sample_rows, small_context
from factory.problems import gym
from factory.problems.sources import Problem, load_problems
from factory.prompting.templates import load_template
from factory.train.grpo import Rollout, reward_sample
from factory.train.rewards import accuracy
from factory.verify.registry import verify_sample

N = 3  # problems per dataset
WRONG = "no idea 1234567"
TEMPLATE = load_template("r1_zero")  # the <think>/<answer> format, stopping at </answer>
SAMPLING = Sampling(temperature=1.0, top_p=1.0, max_tokens=256, n=1, seed=0)

# Datasets whose gold answer cannot score 1 and a wrong one 0 by reasoning-gym's own scorer, or
# that cannot be made from a gym: spec; each reason is checked below against reasoning-gym itself.
CANNOT = {
    "composite": "a mix of other datasets: its `datasets` option (DatasetSpec objects) has no query-string form",
    "boxnet": "no gold answer (None): many plans are right; its scorer runs the model's plan",
    "graph_color": "no gold answer (None): any proper colouring is right; its scorer checks the model's",
    "propositional_logic": "no gold answer (None): any valid conclusion is right; its scorer checks the model's",
    "rubiks_cube": "no gold answer (None): its scorer applies the model's moves to the cube",
    "rush_hour": "no gold answer (None): its scorer plays the model's moves",
    "game_of_life_halting": "its scorer gives 1.0 to any non-empty answer (bool(answer) == bool(gold))",
}


class FakeBackend:
    """Stands in for the engine: answers each problem with the answer it is told to."""

    name, model, chat_prefill = "vllm", "a-model", True

    def __init__(self, answers: dict[str, str] | None = None):
        self.answers = answers or {}

    def has_chat_template(self) -> bool:
        return False

    def prompt_text(self, request):
        return request.text

    def generate(self, requests, sampling, stop, progress):
        out = [[written(self.answers[r.key])] * sampling.n for r in requests]
        progress(sum(len(c) for c in out), 0)
        return out

    def close(self) -> None:
        pass


def written(answer: str | None) -> Completion:
    """The completion a model writes for `answer`: reasoning, then the answer; vLLM stops at the
    template's `</answer>` stop string, which the template keeps."""
    text = f"<think>Let me work through it step by step, then check.</think>\n<answer>{answer}"
    return Completion(text, "stop", prompt_tokens=50, completion_tokens=30, stop_reason="</answer>")


def generated(p: Problem, answer: str | None) -> dict:
    """One sample row as `factory generate` writes it, read back through the shard schema."""
    config = GenerateConfig(problems="gym", model="a-model", sampling=SAMPLING)
    rows = sample_rows(p, TEMPLATE.render_base(p), [written(answer)], TEMPLATE, FakeBackend(), config, "base")
    return to_table(rows).to_pylist()[0]


def three_paths(p: Problem, answer: str | None) -> dict[str, float]:
    """The answer's score in the `correct` filter, the GRPO accuracy reward and `factory eval`."""
    row = generated(p, answer)
    correct = Correct()
    correct.prepare([row])
    outcome = correct.screen(row)
    prompt = TEMPLATE.render_base(p)
    rollout = Rollout(written(answer).text + "</answer>", 30, end_token=0)
    return {
        "correct": outcome.scores["correct"],
        "reward": accuracy(reward_sample(rollout, p, prompt, TEMPLATE)),
        "eval": score_samples([row], k=1)["pass@1"],
        "detail": f"{outcome.reject}",
    }


def own_scorer_cannot(name: str) -> str | None:
    """Why reasoning-gym's own scorer, on its own entries, cannot give gold 1 and a wrong answer 0."""
    try:
        ds = reasoning_gym.create_dataset(name, size=N, seed=0)
    except Exception as e:
        return f"no default dataset: {e}"
    for i in range(N):
        entry = ds[i]
        if entry["answer"] is None or ds.score_answer(entry["answer"], entry) < 1.0:
            return "gold does not score 1"
        try:
            wrong = ds.score_answer(WRONG, entry)
        except Exception:
            wrong = 0.0  # a scorer that raises on junk: the verifier makes that a verifier_error, 0
        if wrong >= 1.0:
            return "wrong scores 1"
    return None


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_every_dataset_in_all_three_paths(name: str):
    if name in CANNOT:
        assert own_scorer_cannot(name), f"{name} is listed as unable, but reasoning-gym scores it fine"
        if name == "composite":
            with pytest.raises(FactoryError, match="config rejects it"):
                load_problems(f"gym:{name}?n={N}&seed=0")
        elif name != "game_of_life_halting":  # a wrong answer still scores 0 everywhere, without a crash
            for p in load_problems(f"gym:{name}?n={N}&seed=0"):
                scores = three_paths(p, WRONG)
                assert (scores["correct"], scores["reward"], scores["eval"]) == (0.0, 0.0, 0.0), scores
        return
    assert own_scorer_cannot(name) is None
    problems = load_problems(f"gym:{name}?n={N}&seed=0")
    assert len(problems) == N and all(p.task == f"gym:{name}" and "metadata" in p.context for p in problems)
    for p in problems:
        right, wrong = three_paths(p, p.answer), three_paths(p, WRONG)
        assert (right["correct"], right["reward"], right["eval"]) == (1.0, 1.0, 1.0), (p.answer, right)
        assert (wrong["correct"], wrong["reward"], wrong["eval"]) == (0.0, 0.0, 0.0), wrong


def test_the_unable_list_names_registered_datasets():
    assert set(CANNOT) <= set(DATASETS), set(CANNOT) - set(DATASETS)


# ---------------------------------------------------------------- the source


def test_spec_options_ids_and_metadata():
    spec = "gym:basic_arithmetic?n=5&seed=1&min_terms=2&max_terms=2&operators=+,-&allow_negation=false"
    problems = load_problems(spec)
    assert len(problems) == 5 and all(p.source == spec and p.task == "gym:basic_arithmetic" for p in problems)
    assert all("*" not in p.problem and "/" not in p.problem for p in problems)  # "+" is plus, not a space
    again, reseeded = load_problems(spec), load_problems(spec.replace("seed=1", "seed=2"))
    assert [p.problem_id for p in again] == [p.problem_id for p in problems]
    assert len({p.problem_id for p in problems}) == 5
    assert not {p.problem_id for p in reseeded} & {p.problem_id for p in problems}
    expected = reasoning_gym.create_dataset("basic_arithmetic", size=5, seed=1, min_terms=2, max_terms=2,
                                            operators=["+", "-"], allow_negation=False)
    assert [p.problem for p in problems] == [e["question"] for e in expected]
    assert [p.answer for p in problems] == [str(e["answer"]) for e in expected]
    assert problems[0].context["metadata"]["expression"] == expected[0]["metadata"]["expression"]
    assert len(load_problems(spec, limit=2)) == 2


def test_metadata_is_json_and_tuples_come_back():
    value = {"grid": ((1, 2), (3, 4)), "pairs": [(0, 1)], 3: {5}, "plain": [1, "a", None]}
    safe, tuples = gym.json_safe(value)
    assert json.loads(json.dumps(safe)) == safe and safe["3"] == "{5}"
    back = gym.restore_tuples(safe, tuples)
    assert back["grid"] == ((1, 2), (3, 4)) and back["pairs"] == [(0, 1)] and back["plain"] == [1, "a", None]
    assert safe["grid"] == [[1, 2], [3, 4]]  # stored metadata stays plain lists


def test_large_scorer_metadata_is_kept_in_samples():
    big = {"metadata": {"board": "x" * 10_000}, "notes": "y" * 10_000}
    gym_problem = Problem("p", "q", "a", task="gym:maze", context=big)
    assert set(small_context(gym_problem)) == {"metadata"}  # a bulky extra column still goes
    assert small_context(Problem("p", "q", "a", task="math", context=big)) == {}


@pytest.mark.parametrize("spec, message", [
    ("gym:basic_arithmatic", "no dataset 'basic_arithmatic'; close names: basic_arithmetic"),
    ("gym:", "name a reasoning-gym dataset"),
    ("gym:basic_arithmetic?n=five", "bad number"),
    ("gym:basic_arithmetic?n=0", "n must be in 1..10000000"),
    ("gym:basic_arithmetic?seed=-1", "seed in 0..4294967295"),
    ("gym:basic_arithmetic?sparkle=1", "basic_arithmetic has no option sparkle; its options are min_terms"),
    ("gym:basic_arithmetic?min_terms=two", "bad value min_terms='two'"),
    ("gym:basic_arithmetic?allow_negation=maybe", "use true or false"),
    ("gym:basic_arithmetic?min_terms=5&max_terms=2",
     "config rejects it: AssertionError: max_terms must be >= min_terms"),
    ("gym:basic_arithmetic?n=2&n=3", "given twice"),
])
def test_bad_specs_are_one_clear_line(spec: str, message: str):
    with pytest.raises(FactoryError, match=message.replace("?", r"\?")) as e:
        load_problems(spec)
    assert "\n" not in str(e.value)


def test_without_reasoning_gym_says_how_to_install(monkeypatch: pytest.MonkeyPatch):
    p = load_problems("gym:basic_arithmetic?n=1")[0]
    row = generated(p, p.answer)
    for module in [m for m in sys.modules if m == "reasoning_gym" or m.startswith("reasoning_gym.")]:
        monkeypatch.setitem(sys.modules, module, None)  # None in sys.modules: the import fails
    with pytest.raises(FactoryError, match=r"pip install 'reasoning-factory\[gym\]'"):
        load_problems("gym:basic_arithmetic?n=1")
    verdict = verify_sample(row)
    assert verdict.reason == "verifier_missing" and "reasoning-factory[gym]" in verdict.detail


def test_a_failing_scorer_is_a_verdict_never_a_crash():
    p = load_problems("gym:prime_factorization?n=1")[0]
    row = generated(p, "not a factorization")  # its scorer raises ValueError on this
    verdict = verify_sample(row)
    assert verdict.reason == "verifier_error" and "ValueError" in verdict.detail
    assert Correct().screen(row).reject.reason == "verifier_error"
    for task in ("gym:no_such_dataset", "gym", "gym:"):  # the scorer's lookup fails
        verdict = verify_sample({**row, "task": task})
        assert verdict.reason == "verifier_error", (task, verdict)
    broken = {**row, "metadata": json.dumps({"format": "think_answer", "context": {"metadata": {}}})}
    assert verify_sample(broken).reason == "verifier_error"  # its metadata is gone: KeyError, as a verdict
    assert accuracy(broken) == 0.0 and score_samples([broken], k=1)["pass@1"] == 0.0


def test_a_gym_problem_without_gold_goes_to_its_scorer_not_a_vote():
    p = load_problems("gym:graph_color?n=1")[0]
    assert p.answer is None
    colouring = json.dumps(p.context["metadata"]["possible_answer"])  # a valid colouring reasoning-gym made
    right, wrong = generated(p, colouring), generated(p, WRONG)
    correct = Correct()
    correct.prepare([right, wrong])
    assert correct.screen(right).reject is None and correct.screen(wrong).reject is not None
    rollout = Rollout(written(colouring).text + "</answer>", 30, end_token=0)
    assert accuracy(reward_sample(rollout, p, TEMPLATE.render_base(p), TEMPLATE)) == 1.0


def test_options_that_change_scoring_reach_the_scorer():
    # decimal_arithmetic's scorer allows 10 ** -max_num_decimal_places of error (the default config: 3)
    p = load_problems("gym:decimal_arithmetic?n=1&seed=3&min_num_decimal_places=1&max_num_decimal_places=1")[0]
    assert p.context["gym_options"] == {"min_num_decimal_places": "1", "max_num_decimal_places": "1"}
    near = str(float(p.answer) + 0.05)
    assert three_paths(p, near)["eval"] == 1.0
    p.context.pop("gym_options")  # scored by the default config instead: 0.05 off is wrong
    assert three_paths(p, near)["eval"] == 0.0


# ---------------------------------------------------------------- through `factory generate`


def test_generate_reads_a_gym_source_and_its_samples_verify(runs_dir: Path):
    spec = "gym:arc_1d?n=4&seed=0"  # answers are grids, metadata has tuples
    problems = load_problems(spec)
    config = GenerateConfig(problems=spec, model="a-model", sampling=SAMPLING, prompt_mode="base")
    run = runs_dir / "gym-run"
    run_generation(config, run, backend=FakeBackend({p.problem_id: p.answer for p in problems}))
    rows = shards.read_samples(run, "generated")
    assert len(rows) == 4 and {r["task"] for r in rows} == {"gym:arc_1d"}
    assert all(json.loads(r["metadata"])["context"]["metadata"] for r in rows)
    correct = Correct()
    correct.prepare(rows)
    assert all(correct.screen(r).reject is None for r in rows)
    assert score_samples(rows, k=1)["pass@1"] == 1.0


def test_cli_generate_refuses_a_bad_gym_source_in_one_line(cli, runs_dir: Path):
    # refused before any engine starts
    result = cli("generate", "r", "--model", "some/model", "--problems", "gym:basic_arithmatic?n=3")
    assert result.exit_code == 2 and "close names: basic_arithmetic" in result.output
    assert "Traceback" not in result.output
