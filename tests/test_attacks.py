"""A hostile user's probes at the command line: template escapes, files that break readers, damaged
run folders, run names that climb out, secrets echoed by a server, export leftovers, SQL that reaches
other files. Each one gets one line and a non-zero exit (or is simply handled), never a traceback."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from factory.core import shards
from tests.helpers import send_json

BAD_UTF8 = b'{"problem": "What is 1 + 1?\xff\xfe", "answer": "2"}\n'


def one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    for needle in needles:
        assert needle in result.output, result.output


@pytest.fixture
def filtered(cli, runs_dir: Path, tmp_path: Path) -> Path:
    """A small filtered run made by import (no engine needed)."""
    src = tmp_path / "gens.jsonl"
    src.write_text("".join(json.dumps({"problem": f"What is {i} + 1?", "answer": str(i + 1),
                                       "completion": f"<think>{i} + 1 = {i + 1}</think> \\boxed{{{i + 1}}}"}) + "\n"
                           for i in range(6)))
    assert cli("import", src, "r").exit_code == 0
    assert cli("filter", "r", "--chain", "distill").exit_code == 0
    return runs_dir / "r"


# ------------------------------------------------------------------ templates are data

ESCAPES = [
    "{{ cycler.__init__.__globals__.os.system('touch PWNED') }}",
    "{{ joiner.__init__.__globals__.os.popen('touch PWNED').read() }}",
    "{{ lipsum.__globals__['os'].system('touch PWNED') }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ self._TemplateReference__context.cycler.__init__.__globals__.os.system('touch PWNED') }}",
    "{{ namespace.__init__.__globals__.os.system('touch PWNED') }}",
]


@pytest.mark.parametrize("payload", ESCAPES)
def test_template_escapes_are_refused(cli, runs_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, payload):
    monkeypatch.chdir(tmp_path)
    template = tmp_path / "evil.yaml"
    template.write_text(json.dumps({"name": "evil", "description": "d", "format": "think_answer",
                                    "base": payload + " {{ problem }}",
                                    "chat": [{"role": "user", "content": payload}]}))
    result = cli("generate", "e", "--model", "no-such-model-folder/x", "--template", str(template),
                 "--problems", "builtin:arithmetic?n=2")
    one_line_error(result, "evil.yaml", "Python internals")
    assert not (tmp_path / "PWNED").exists()


# ------------------------------------------------------------------ files that break readers

@pytest.mark.parametrize("name, data", [("bad.jsonl", BAD_UTF8), ("bad.csv", b"problem,answer\nWhat\xff is 1+1?,2\n")])
def test_invalid_utf8_problems(cli, runs_dir: Path, tmp_path: Path, name, data):
    (tmp_path / name).write_bytes(data)
    one_line_error(cli("generate", "u", "--model", "m/x", "--problems", tmp_path / name), name, "UTF-8")


def test_invalid_utf8_chain_template_and_recipe(cli, runs_dir: Path, tmp_path: Path, filtered: Path):
    (tmp_path / "chain.yaml").write_bytes(b"name: c\ndescription: \xff\nsteps: [parsed]\n")
    one_line_error(cli("filter", "r", "--chain", tmp_path / "chain.yaml", "--redo"), "chain.yaml", "UTF-8")
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "t.yaml").write_bytes(b"name: t\ndescription: \xff\n")
    one_line_error(cli("templates", "--templates-dir", folder), "t.yaml", "UTF-8")
    (tmp_path / "recipe.yaml").write_bytes(b"run: x\ngenerate: {model: \xff}\n")
    one_line_error(cli("run", tmp_path / "recipe.yaml", "--dry-run"), "recipe.yaml", "UTF-8")


def test_a_csv_field_over_128_kib_is_data(tmp_path: Path):
    from factory.problems.sources import load_problems

    (tmp_path / "long.csv").write_text("problem,answer\n\"" + "x" * 200_000 + "\",1\n")
    assert len(load_problems(str(tmp_path / "long.csv"))[0].problem) == 200_000


@pytest.mark.parametrize("spec, needle", [("builtin:arithmetic?max_operand=0", "max_operand"),
                                          ("builtin:arithmetic?n=-5", "n must be at least 1")])
def test_builtin_parameters_out_of_range(cli, runs_dir: Path, spec, needle):
    one_line_error(cli("generate", "b", "--model", "m/x", "--problems", spec), needle)


def test_set_with_bad_yaml(cli, runs_dir: Path):
    one_line_error(cli("run", "recipes/demo.yaml", "--dry-run", "--set", "filter.chain=[unclosed"),
                   "--set filter.chain")


@pytest.mark.parametrize("manifest", ["{not json", "[1, 2]", '{"fingerprint": "x", "config": "a string"}'])
def test_hand_edited_manifest(cli, filtered: Path, manifest):
    (filtered / "manifest.json").write_text(manifest)
    one_line_error(cli("filter", "r", "--chain", "distill", "--redo"), "manifest.json")
    one_line_error(cli("show", "r"), "manifest.json")


@pytest.mark.parametrize("command", [["show", "r", "--stage", "curated"], ["sql", "r", "SELECT count(*) FROM curated"],
                                     ["report", "r"], ["export", "r", "--to", "OUT"]])
def test_truncated_curated_shard_is_named(cli, filtered: Path, tmp_path: Path, command):
    shard = shards.done_shards(filtered, "curated")[0]
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    one_line_error(cli(*[str(tmp_path / "out") if c == "OUT" else c for c in command]), str(shard), "--redo")


def test_truncated_generated_shard_fails_funnel(cli, filtered: Path):
    shard = shards.done_shards(filtered, "generated")[0]
    shard.write_bytes(shard.read_bytes()[:100])
    one_line_error(cli("funnel", "r"), str(shard))


# ------------------------------------------------------------------ run names are names

@pytest.mark.parametrize("name", ["..", "../escaped", "a" * 300, "bad\nname", "evil\u202eexe", ".hidden", "a/b"])
def test_run_names_stay_in_the_runs_folder(cli, runs_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name):
    monkeypatch.chdir(tmp_path / "..")
    before = set(tmp_path.parent.iterdir())
    one_line_error(cli("generate", name, "--model", "m/x", "--problems", "builtin:arithmetic?n=2"), "run name")
    assert set(tmp_path.parent.iterdir()) == before


def test_a_recipe_cannot_name_a_path(cli, runs_dir: Path, tmp_path: Path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("run: ../../x\ngenerate: {model: m/x, problems: 'builtin:arithmetic?n=2'}\n")
    one_line_error(cli("run", recipe, "--dry-run"), "not a run name")


def test_a_folder_in_the_working_directory_is_not_the_run(cli, filtered: Path, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "r").mkdir()  # same name as the run, but not it
    result = cli("funnel", "r")
    assert result.exit_code == 0 and "generated 6" in result.output


# ------------------------------------------------------------------ secrets

KEY = "sk-testsecret0123456789abcdef"


class EchoingServer(BaseHTTPRequestHandler):
    """Answers every completion with a 400 whose body echoes the request's headers."""

    def log_message(self, *args):
        pass

    def _send(self, code: int, body: dict) -> None:
        send_json(self, code, body)

    def do_GET(self):
        self._send(200, {"object": "list", "data": [{"id": "m", "object": "model"}]})

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        echoed = {k: v for k, v in self.headers.items()}
        self._send(400, {"error": {"message": f"bad request; you sent {echoed} (api_key={KEY})", "type": "invalid"}})


def test_an_echoing_server_never_gets_the_key_stored_or_shown(cli, runs_dir: Path, monkeypatch: pytest.MonkeyPatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoingServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    try:
        result = cli("generate", "s", "--backend", "openai", "--base-url", f"http://127.0.0.1:{server.server_address[1]}/v1",
                     "--problems", "builtin:arithmetic?n=2", "--n", "1")
    finally:
        server.shutdown()
    rows = shards.read_table(runs_dir / "s", "generated").to_pylist()
    assert rows and all(r["error"] for r in rows)
    assert all(KEY not in r["error"] and "[redacted]" in r["error"] for r in rows)
    shown = cli("show", "s", "-n", "2")
    assert KEY not in result.output + shown.output


# ------------------------------------------------------------------ export leftovers

def test_export_cleans_a_killed_exports_temp_copy(cli, filtered: Path, tmp_path: Path):
    leftover = tmp_path / ".ds.abc123.tmp"
    (leftover / "data").mkdir(parents=True)
    assert cli("export", "r", "--to", tmp_path / "ds").exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".ds")) == []


def test_to_hub_alone_leaves_no_copy(cli, filtered: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import tempfile

    from tests.test_hub import TOKEN, StandInHub

    hub = StandInHub()
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    try:
        result = cli("export", "r", "--to-hub", "tester/data")
    finally:
        hub.close()
    assert result.exit_code == 0, result.output
    assert hub.files["tester/data"] and list(scratch.iterdir()) == []


# ------------------------------------------------------------------ SQL reads the run only

@pytest.mark.parametrize("statement", ["SELECT * FROM read_text('/etc/hostname')",
                                       "COPY (SELECT 1) TO 'OUT'"])
def test_sql_reaches_no_other_file(cli, filtered: Path, tmp_path: Path, statement):
    target = tmp_path / "written.csv"
    result = cli("sql", "r", statement.replace("OUT", str(target)))
    one_line_error(result, "--unsafe")
    assert not target.exists()
    assert cli("sql", "r", "SELECT count(*) AS n FROM curated").exit_code == 0


def test_sql_unsafe_is_the_old_power(cli, filtered: Path):
    result = cli("sql", "r", "SELECT length(content) > 0 AS ok FROM read_text('/etc/hostname')", "--unsafe")
    assert result.exit_code == 0 and "True" in result.output
