"""`factory sql` over a filtered run's views."""

from __future__ import annotations

from pathlib import Path

import pytest

from factory.core.errors import FactoryError
from factory.filter.chain import load_chain, run_chain
from factory.inspect.sql import query
from tests.test_chain import make_run


def test_views_answer_ad_hoc_questions(tmp_path: Path, cli):
    run = tmp_path / "r"
    rows = make_run(run)
    run_chain(run, load_chain("distill"), workers=1)
    counts = query(run, "SELECT (SELECT count(*) FROM generated) g, (SELECT count(*) FROM curated) k, "
                        "(SELECT count(*) FROM rejected) r").to_pylist()[0]
    assert counts["g"] == len(rows) == counts["k"] + counts["r"]
    top = query(run, "SELECT rejected_by, count(*) n FROM rejected GROUP BY 1 ORDER BY n DESC LIMIT 1").to_pylist()[0]
    assert top["rejected_by"] == "correct"
    result = cli("sql", str(run), "SELECT problem_id FROM generated EXCEPT SELECT problem_id FROM curated")
    assert result.exit_code == 0
    bad = cli("sql", str(run), "SELECT nope FROM curated")
    assert bad.exit_code == 2 and "query failed" in bad.output


def test_not_a_run_is_a_clear_error(tmp_path: Path):
    with pytest.raises(FactoryError, match="not a run folder"):
        query(tmp_path, "SELECT 1")
