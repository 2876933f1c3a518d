"""Scriptable output: --json on every list/show command, whole ids in a pipe, the job id on a line of its own,
and one exit-status scheme (1 failed or not found, 2 usage) in every command group."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from domainrag.cli import main
from domainrag.workspace import Workspace

from .test_main import _commands

LONG = "a-rather-long-app-name-that-a-narrow-table-would-wrap-0123456789"


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace.open(tmp_path / "ws")


def _app_record(name: str) -> dict[str, Any]:
    return {"name": name, "model": "smollm2-135m-instruct", "retrieval": {"index": "kb", "top_k": 3},
            "generation": {"temperature": 0.1}}


def test_every_list_and_show_command_takes_json() -> None:
    tree = typer.main.get_command(main.app)  # type: ignore[arg-type]
    verbs = [path for path in _commands(tree) if path[-1] in ("list", "show", "stats")]
    assert len(verbs) >= 9
    for path in verbs:
        cmd: Any = tree
        for name in path:
            cmd = cmd.commands[name]
        assert any("--json" in p.opts and p.is_flag for p in cmd.params), path


def test_list_and_show_json_are_the_records(ws: Workspace, cli_for) -> None:
    ws.catalog.put("app", LONG, _app_record(LONG))
    runner = CliRunner()
    listed = runner.invoke(cli_for(ws), ["app", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)
    assert [r["name"] for r in rows] == [LONG] and rows[0]["retrieval"] == {"index": "kb", "top_k": 3}
    shown = runner.invoke(cli_for(ws), ["app", "show", LONG, "--json"])
    assert json.loads(shown.stdout)["model"] == "smollm2-135m-instruct"
    readable = runner.invoke(cli_for(ws), ["app", "show", LONG])
    assert readable.exit_code == 0 and "smollm2-135m-instruct" in readable.output
    assert not readable.output.lstrip().startswith("{")  # a table by default, JSON only when asked


def test_tables_in_a_pipe_never_cut_ids(ws: Workspace, cli_for) -> None:
    ws.catalog.put("app", LONG, _app_record(LONG))
    out = CliRunner(env={"COLUMNS": "40"}).invoke(cli_for(ws), ["app", "list"])  # not a terminal, and narrow
    assert out.exit_code == 0, out.output
    assert LONG in out.output and "…" not in out.output
    row = next(line for line in out.output.splitlines() if LONG in line)
    assert "smollm2-135m-instruct" in row  # one line per record: a script can split it


def test_exit_status_per_group(ws: Workspace, cli_for) -> None:
    """Not found and failed operations exit 1, usage errors 2, each with one message and no traceback."""
    runner = CliRunner()
    not_found = [["app", "show", "ghost"], ["app", "invoke", "ghost", "--query", "q"], ["index", "stats", "ghost"],
                 ["job", "show", "ghost"], ["job", "logs", "ghost"], ["model", "show", "ghost"],
                 ["key", "create", "--app", "ghost"],
                 ["eval", "answers", "--app", "ghost", "--dataset", "/ghost.jsonl"],
                 ["ingest", "--index", "ghost", "/nope"], ["dataset", "upload", "/ghost", "--name", "d"],
                 ["index", "delete", "ghost"]]  # without --yes: refused before asking
    for args in not_found:
        res = runner.invoke(cli_for(ws), args)
        assert res.exit_code == 1, (args, res.output)
        errors = [line for line in res.output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "ghost" in errors[0] and "Traceback" not in res.output, args
    usage = [["app", "create", "--name", "a", "--model", "m", "--retrieval", "{oops"],  # invalid option value
             ["app", "create", "--name", "a", "--model", "m", "--retrieval", '{"top_k": "many"}'],  # invalid field
             ["index", "search", "kb", "--query", "q", "--mode", "sideways"],
             ["dataset", "upload", "foo://bucket/x", "--name", "d"],  # a URL where a local path goes
             ["index", "create", "kb2", "--store", "foo"],  # refused as --store before the model loads
             ["job", "create", "--name", "j", "--algorithm", "embedding", "--base-model", "m", "--dataset", "d",
              "--hp", "novalue"],
             ["app", "show"],  # missing argument (click)
             ["index", "list", "--no-such-option"]]  # unknown option (click)
    for args in usage:
        res = runner.invoke(cli_for(ws), args)
        assert res.exit_code == 2, (args, res.output)
        assert "Traceback" not in res.output, args


def _job(ws: Workspace, name: str, **fields: Any) -> None:
    spec = {"name": name, "algorithm": "embedding", "base_model": "all-minilm-l6-v2", "dataset": "/data/pairs.jsonl"}
    ws.catalog.put("job", name, {"spec": spec, "prefix": f"jobs/{name}", "uri": ws.lake.url(f"jobs/{name}"),
                                 **fields})


def test_job_show_is_a_readable_summary(ws: Workspace, cli_for) -> None:
    t0 = time.mktime((2026, 3, 4, 10, 0, 0, 0, 0, -1))
    _job(ws, "emb-20260304-100000-abcdef", state="succeeded", created_at=t0, running_at=t0 + 5,
         finished_at=t0 + 5 + 83, metrics={"train_loss": 0.123456, "eval_ndcg@10": 0.8, "stop_reason": "max_steps"},
         artifact_key="jobs/emb-20260304-100000-abcdef/output", artifact_format="sentence-transformers")
    ws.lake.write_text("jobs/emb-20260304-100000-abcdef/loss.png", "png")
    out = CliRunner().invoke(cli_for(ws), ["job", "show", "emb-20260304-100000-abcdef"])
    assert out.exit_code == 0, out.output
    text = out.output
    for expected in ("embedding", "succeeded", "2026-03-04 10:00:05", "2026-03-04 10:01:28", "1m 23s", "0.1235",
                     "eval_ndcg@10", "max_steps", "sentence-transformers", "loss.png"):
        assert expected in text, expected
    assert ws.lake.url("jobs/emb-20260304-100000-abcdef/loss.png") in text  # the plot's full location
    raw = json.loads(CliRunner().invoke(cli_for(ws), ["job", "show", "emb-20260304-100000-abcdef", "--json"]).output)
    assert raw["metrics"]["train_loss"] == 0.123456 and raw["finished_at"] == t0 + 88


def test_job_create_prints_the_id_alone_and_a_failed_wait_exits_1(ws: Workspace, cli_for, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from domainrag.training import jobs
    from domainrag.training.spec import JobRecord

    def worker_that_fails(w: Workspace, job_id: str, resume: bool = False) -> JobRecord:
        # Stands in for the worker process only: the CLI's own creating, following and printing stay real.
        w.lake.write_text(f"jobs/{job_id}/log.txt", "loading the base model\nFAILED: out of memory\n")
        now = time.time()
        return JobRecord.model_validate(w.catalog.update("job", job_id, state="failed", error="out of memory",
                                                         running_at=now, finished_at=now))

    monkeypatch.setattr(jobs, "start_job", worker_that_fails)
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"query": f"q{i}", "positive": f"p{i}"}) + "\n" for i in range(4)))
    out = CliRunner().invoke(cli_for(ws), ["job", "create", "--name", "emb", "--algorithm", "embedding",
                                           "--base-model", "all-minilm-l6-v2", "--dataset", str(pairs), "--wait"])
    assert out.exit_code == 1, out.output  # the job failed: so did the command that waited for it
    job_id = ws.catalog.list("job")[0]["name"]
    assert job_id in out.stdout.splitlines()  # the id on a line of its own
    assert out.stdout.splitlines()[0] == job_id
    assert "FAILED: out of memory" in out.stdout and "Traceback" not in out.output


def test_serve_on_a_port_in_use_names_it(ws: Workspace, cli_for, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    def serving(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the port check let a held port through")  # instead of serving forever

    monkeypatch.setattr("uvicorn.run", serving)

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        res = CliRunner().invoke(cli_for(ws), ["serve", "--port", str(port)])
    assert res.exit_code == 1 and f"cannot listen on 127.0.0.1:{port}" in res.output and "--port" in res.output
