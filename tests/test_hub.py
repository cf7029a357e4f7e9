"""Dataset export (Hub layout + card) and upload, against a local stand-in for the Hub's HTTP API."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import huggingface_hub.constants
import pytest
import yaml

from factory.core import shards
from factory.core.errors import FactoryError
from factory.core.sample import Sampling, stable_hash
from factory.filter.chain import load_chain, run_chain
from factory.hub import EXPORT_SCHEMA, _export_row, check_token, export_run, size_category, upload
from factory.problems import arithmetic
from factory.train.data import sample_to_messages
from tests.helpers import send_json
from tests.synthetic_runs import write_run

TOKEN = "hf_standin_SECRET_0123456789abcdef"
MODEL = "teacher/tiny-r1"
SAMPLING = Sampling(temperature=0.6, top_p=0.95, max_tokens=512, n=3, seed=7)


# ---------------------------------------------------------------- a small filtered run


def make_run(run: Path, problems: int = 8) -> list[dict]:
    """Generated shards as the runner writes them: sample 0 right, 1 wrong, 2 right in other words."""
    config = {"problems": f"builtin:arithmetic?n={problems}&seed=3", "model": MODEL, "template": "r1_zero",
              "backend": "vllm", "sampling": SAMPLING.as_dict(), "prompt_mode": "chat"}
    samples = []
    for p in arithmetic.generate(problems, seed=3):
        pid = stable_hash("arithmetic", p.expression)
        for i in range(SAMPLING.n):
            steps = "\n".join(p.steps) + ("\nLet me check that again: it holds." if i == 2 else "")
            answer = p.answer + 1 if i == 1 else p.answer
            samples.append(dict(problem_id=pid, sample_index=i, problem=arithmetic.question(p), answer=str(p.answer),
                                completion=f"<think>\n{steps}\n</think>\n<answer>{answer}</answer>",
                                metadata=json.dumps({"prompt_mode": "chat", "prefill": ""})))
    # two generated shards
    return write_run(run, samples, len(samples) // 2, config=config, model=MODEL, sampling=SAMPLING)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "tiny"
    make_run(run)
    run_chain(run, load_chain("distill"), workers=1)
    return run


@pytest.fixture(autouse=True)
def no_stored_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may see a real token: empty HF_HOME and token path, no token variables."""
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE", "HF_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    home = tmp_path / "hf-home"
    home.mkdir()
    monkeypatch.setenv("HF_HOME", str(home))
    # huggingface_hub derives the token path from HF_HOME once, at import.
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))


def front_matter(readme: Path) -> tuple[dict, str]:
    m = re.match(r"^---\n(.*?)\n---\n(.*)$", readme.read_text(encoding="utf-8"), re.S)
    assert m, "README.md has no YAML front matter"
    return yaml.safe_load(m.group(1)), m.group(2)


def load(folder: Path, cache: Path):
    from datasets import load_dataset

    return load_dataset(str(folder), cache_dir=str(cache))["train"]


# ---------------------------------------------------------------- export


def test_export_loads_with_datasets_and_has_a_full_card(run: Path, tmp_path: Path):
    curated = shards.read_table(run, "curated").to_pylist()
    funnel = json.loads((run / "funnel.json").read_text())
    assert 0 < len(curated) < funnel["generated"] and funnel["rejected"] > 0  # right and wrong samples
    summary = export_run(run, tmp_path / "ds")
    assert summary == {"rows": len(curated), "files": ["data/train-00000-of-00001.parquet", "README.md"],
                       "path": str(tmp_path / "ds")}
    ds = load(tmp_path / "ds", tmp_path / "cache")
    assert ds.column_names == EXPORT_SCHEMA.names
    assert ds["id"] == [r["id"] for r in curated]
    assert ds["messages"] == [sample_to_messages(r) for r in curated]
    for row, src in zip(ds, curated):
        user, assistant = row["messages"]
        assert user == {"role": "user", "content": src["problem"]}
        assert assistant["role"] == "assistant" and assistant["content"] == src["completion"]
        assert (row["reasoning"], row["final"], row["scores"]) == (src["reasoning"], src["final"], src["scores"])
    meta, body = front_matter(tmp_path / "ds" / "README.md")
    assert meta["configs"] == [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}]
    assert meta["license"] == "apache-2.0" and meta["size_categories"] == ["n<1K"]
    assert set(meta["tags"]) >= {"reasoning", "chain-of-thought", "synthetic", "rejection-sampling"}
    assert meta["task_categories"] == ["text-generation"]
    assert meta["dataset_info"]["splits"] == [{"name": "train", "num_bytes": meta["dataset_info"]["dataset_size"],
                                               "num_examples": len(curated)}]
    assert [f["name"] for f in meta["dataset_info"]["features"]] == EXPORT_SCHEMA.names
    assert MODEL in body and "r1_zero" in body and "temperature 0.6" in body and "`distill`" in body
    assert "| step | in | kept | rejected | reasons |" in body
    for s in funnel["steps"]:
        assert f"| {s['step']} | {s['in']} | {s['kept']} | {sum(s['rejected'].values())} |" in body
    assert "wrong_answer" in body
    tokens = [r["completion_tokens"] for r in curated]
    assert f"| completion tokens | {min(tokens)} |" in body and f" {max(tokens)} |" in body
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "ds", "hf-home"]  # no temp folder left


def test_shard_rows_names_files_and_reexport_replaces(run: Path, tmp_path: Path):
    rows = shards.read_table(run, "curated").num_rows
    out = tmp_path / "ds"
    summary = export_run(run, out, shard_rows=3, license="mit")
    n = math.ceil(rows / 3)
    assert n > 1
    names = [f"data/train-{k:05d}-of-{n:05d}.parquet" for k in range(n)]
    assert summary["files"] == [*names, "README.md"]
    assert sorted(str(p.relative_to(out)) for p in (out / "data").iterdir()) == names
    assert load(out, tmp_path / "cache")["id"] == shards.read_table(run, "curated").column("id").to_pylist()
    assert front_matter(out / "README.md")[0]["license"] == "mit"
    export_run(run, out)  # over an earlier export: replaced whole, no stale shard files
    assert [p.name for p in (out / "data").iterdir()] == ["train-00000-of-00001.parquet"]
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(FactoryError, match="not an earlier export"):
        export_run(run, other)
    assert [p.name for p in other.iterdir()] == ["keep.txt"]


def test_failed_export_leaves_the_earlier_one(run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    out = tmp_path / "ds"
    export_run(run, out, shard_rows=5)
    before = folder_files(out)

    def broken_card(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("factory.hub._card", broken_card)  # fails after the data files are written
    with pytest.raises(RuntimeError, match="disk full"):
        export_run(run, out)
    assert folder_files(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "hf-home"]  # the temp folder is gone


def test_unfiltered_run_is_refused(tmp_path: Path):
    make_run(tmp_path / "raw", problems=2)
    with pytest.raises(FactoryError, match="filter it first: factory filter"):
        export_run(tmp_path / "raw", tmp_path / "ds")
    assert not (tmp_path / "ds").exists()


def test_prefill_is_part_of_the_assistant_turn_and_sizes():
    row = {"problem": "1+1?", "completion": "2</think><answer>2</answer>",
           "metadata": json.dumps({"prefill": "<think>"})}
    assert _export_row(row)["messages"][1]["content"] == "<think>2</think><answer>2</answer>"
    assert [size_category(n) for n in (0, 999, 1000, 9999, 10**5, 2 * 10**6)] == [
        "n<1K", "n<1K", "1K<n<10K", "1K<n<10K", "100K<n<1M", "1M<n<10M"]


# ---------------------------------------------------------------- a stand-in for the Hub's HTTP API


class StandInHub:
    """Just the endpoints huggingface_hub calls to create a repo and commit a folder.

    whoami-v2, repos/create, validate-yaml, preupload and commit (ndjson, base64 for regular
    files); with `lfs=True` it answers preupload with "lfs" for Parquet, as the real Hub's
    .gitattributes does, and serves the LFS batch API plus the upload and verify targets.
    """

    def __init__(self, lfs: bool = False):
        self.lfs = lfs
        self.requests: list[tuple[str, str, str | None]] = []  # method, path, Authorization header
        self.unknown: list[str] = []
        self.repos: dict[str, dict] = {}
        self.files: dict[str, dict[str, bytes]] = {}
        self.objects: dict[str, bytes] = {}  # LFS store by sha256
        self.lfs_paths: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                hub.handle(self, "GET")

            def do_POST(self):
                hub.handle(self, "POST")

            def do_PUT(self):
                hub.handle(self, "PUT")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @staticmethod
    def body(h: BaseHTTPRequestHandler) -> bytes:
        if h.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while size := int(h.rfile.readline().strip(), 16):
                data += h.rfile.read(size)
                h.rfile.readline()
            h.rfile.readline()
            return data
        return h.rfile.read(int(h.headers.get("Content-Length") or 0))

    @staticmethod
    def reply(h: BaseHTTPRequestHandler, status: int, obj: object) -> None:
        send_json(h, status, obj)

    def handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        path, auth = h.path.split("?")[0], h.headers.get("Authorization")
        body = self.body(h)
        self.requests.append((method, path, auth))
        if path.startswith("/lfs-upload/") and method == "PUT":  # a presigned storage URL: no Hub auth
            oid = path.rsplit("/", 1)[1]
            ok = hashlib.sha256(body).hexdigest() == oid
            self.objects[oid] = body
            return self.reply(h, 200 if ok else 400, {})
        if auth != f"Bearer {TOKEN}":
            return self.reply(h, 401, {"error": "Invalid credentials in Authorization header"})
        if (method, path) == ("GET", "/api/whoami-v2"):
            return self.reply(h, 200, {"type": "user", "name": "tester", "orgs": [], "auth": {"type": "access_token"}})
        if (method, path) == ("POST", "/api/repos/create"):
            p = json.loads(body)
            repo = f"{p.get('organization') or 'tester'}/{p['name']}"
            if repo in self.repos:
                # huggingface_hub reads `url` even from the 409 that exist_ok accepts
                conflict = {"error": "You already created this dataset repo", "url": f"{self.url}/datasets/{repo}"}
                return self.reply(h, 409, conflict)
            self.repos[repo], self.files[repo] = p, {}
            return self.reply(h, 200, {"url": f"{self.url}/datasets/{repo}", "name": repo})
        if (method, path) == ("POST", "/api/validate-yaml"):
            yaml.safe_load(json.loads(body)["content"].split("---")[1])
            return self.reply(h, 200, {"errors": [], "warnings": []})
        m = re.fullmatch(r"/api/datasets/([^/]+/[^/]+)/(preupload|commit)/main", path)
        if m and m.group(1) in self.repos and method == "POST":
            repo = m.group(1)
            if m.group(2) == "preupload":
                return self.reply(h, 200, {"files": [
                    {"path": f["path"], "shouldIgnore": False, "oid": None,
                     "uploadMode": "lfs" if self.lfs and f["path"].endswith(".parquet") else "regular"}
                    for f in json.loads(body)["files"]]})
            for line in body.decode().splitlines():
                op = json.loads(line)
                if op["key"] == "file":
                    self.files[repo][op["value"]["path"]] = base64.b64decode(op["value"]["content"])
                elif op["key"] == "lfsFile":
                    self.files[repo][op["value"]["path"]] = self.objects[op["value"]["oid"]]
                    self.lfs_paths.append(op["value"]["path"])
            oid = hashlib.sha1(body).hexdigest()
            return self.reply(h, 200, {"commitUrl": f"{self.url}/datasets/{repo}/commit/{oid}", "commitOid": oid})
        m = re.fullmatch(r"/datasets/([^/]+/[^/]+)\.git/info/lfs/objects/batch", path)
        if m and method == "POST":
            objects = [{"oid": o["oid"], "size": o["size"], "authenticated": True, "actions": {
                "upload": {"href": f"{self.url}/lfs-upload/{o['oid']}"},
                "verify": {"href": f"{self.url}/lfs-verify"}}} for o in json.loads(body)["objects"]]
            return self.reply(h, 200, {"transfer": "basic", "objects": objects})
        if (method, path) == ("POST", "/lfs-verify"):
            return self.reply(h, 200 if json.loads(body)["oid"] in self.objects else 404, {})
        self.unknown.append(f"{method} {path}")
        return self.reply(h, 404, {"error": "not found"})


@pytest.fixture
def hub():
    stand_in = StandInHub()
    yield stand_in
    stand_in.close()


def folder_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# huggingface_hub's LFS upload passes raw bytes as `data=`, which its HTTP client deprecates.
@pytest.mark.filterwarnings("ignore:Use 'content=:DeprecationWarning")
@pytest.mark.parametrize("lfs", [False, True], ids=["regular-commit", "lfs-xet-off"])
def test_upload_sends_every_file_and_never_leaks_the_token(
    run: Path, tmp_path: Path, hub: StandInHub, lfs: bool, monkeypatch: pytest.MonkeyPatch, capfd
):
    folder = tmp_path / "ds"
    export_run(run, folder, shard_rows=4)
    if lfs:
        # hf_xet (installed) would send LFS files to a xet CAS server; the LFS batch API is the fallback.
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)
        hub.lfs = True
        monkeypatch.setenv("HF_TOKEN", TOKEN)  # the token and the endpoint from the environment
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        url = upload(folder, "tiny-r1-data")
        repo = "tester/tiny-r1-data"
    else:
        url = upload(folder, "team/tiny-r1-data", private=True, token=TOKEN, endpoint=hub.url)
        repo = "team/tiny-r1-data"
    assert url == f"{hub.url}/datasets/{repo}"
    assert hub.files[repo] == folder_files(folder)  # every file, identical bytes
    assert hub.repos[repo]["type"] == "dataset"
    assert hub.repos[repo]["visibility"] == ("public" if lfs else "private")
    parquet = sorted(p for p in folder_files(folder) if p.endswith(".parquet"))
    assert len(parquet) > 1 and sorted(hub.lfs_paths) == (parquet if lfs else [])
    assert not hub.unknown
    assert hub.requests[0][:2] == ("GET", "/api/whoami-v2")  # the token is checked first
    assert all(auth == f"Bearer {TOKEN}" for _, path, auth in hub.requests if not path.startswith("/lfs-upload/"))
    out, err = capfd.readouterr()
    assert TOKEN not in out + err
    assert not any(TOKEN.encode() in data for data in folder_files(folder).values())
    upload(folder, repo, token=TOKEN, endpoint=hub.url)  # again: the repo exists (409) and that is fine


def test_missing_token_fails_before_any_work(tmp_path: Path, hub: StandInHub):
    with pytest.raises(FactoryError, match="hf auth login.*HF_TOKEN"):
        check_token(None, hub.url)
    # upload checks the token before it looks at the folder, which does not even exist here
    with pytest.raises(FactoryError, match="hf auth login"):
        upload(tmp_path / "not-exported-yet", "tester/x", endpoint=hub.url)
    assert hub.requests == [] and not (tmp_path / "not-exported-yet").exists()


def test_rejected_token_and_unreachable_hub(run: Path, tmp_path: Path, hub: StandInHub, capfd):
    bad = "hf_wrong_token_SECRET"
    with pytest.raises(FactoryError, match="rejected the Hugging Face token \\(401\\).*hf auth login") as e:
        upload(tmp_path / "ds", "tester/x", token=bad, endpoint=hub.url)
    assert bad not in str(e.value) and bad not in "".join(capfd.readouterr())
    assert [r[:2] for r in hub.requests] == [("GET", "/api/whoami-v2")] and not hub.repos
    assert check_token(TOKEN, hub.url) == "tester"
    with pytest.raises(FactoryError, match="not a dataset export"):
        upload(run, "tester/x", token=TOKEN, endpoint=hub.url)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(FactoryError, match="cannot reach"):
        check_token(TOKEN, f"http://127.0.0.1:{port}")


def test_cli_export_and_token_check_before_work(run: Path, tmp_path: Path, cli):
    result = cli("export", str(run), "--to", str(tmp_path / "ds"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ds" / "README.md").exists() and list((tmp_path / "ds" / "data").glob("train-*.parquet"))
    no_token = cli("export", str(run), "--to", str(tmp_path / "ds2"), "--to-hub", "me/data")
    assert no_token.exit_code == 2 and "HF_TOKEN" in no_token.output and not (tmp_path / "ds2").exists()
    nowhere = cli("export", str(run))
    assert nowhere.exit_code == 2 and "--out DIR" in nowhere.output
