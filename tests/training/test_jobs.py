"""Job lifecycle with a real worker process (no model training needed for these paths)."""

from __future__ import annotations

from pathlib import Path

import pytest

from domainrag.errors import DatasetError, DomainRagError
from domainrag.training.jobs import create_job, start_job, wait_job
from domainrag.training.spec import EmbeddingJobSpec, SFTJobSpec


def test_unknown_or_wrong_kind_base_model_is_refused(ws) -> None:
    with pytest.raises(DomainRagError, match="unknown base model"):
        SFTJobSpec(name="x", base_model="no-such-model", dataset="d.jsonl").check_base_model()
    with pytest.raises(DomainRagError, match="needs an llm model"):
        SFTJobSpec(name="x", base_model="all-minilm-l6-v2", dataset="d.jsonl").check_base_model()


def test_bad_dataset_is_refused_before_the_job_starts(ws, tmp_path: Path) -> None:
    bad = tmp_path / "chat.jsonl"
    bad.write_text(
        '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\nnot json\n'
    )
    with pytest.raises(DatasetError) as err:
        create_job(ws, SFTJobSpec(name="sft", base_model="smollm2-135m-instruct", dataset=str(bad)))
    assert err.value.line == 2
    assert ws.catalog.list("job") == []
    with pytest.raises(DatasetError, match="does not exist"):
        create_job(
            ws,
            SFTJobSpec(
                name="sft", base_model="smollm2-135m-instruct", dataset=str(tmp_path / "missing.jsonl")
            ),
        )


def test_crashing_job_is_marked_failed_with_reason(ws, tmp_path: Path) -> None:
    data = tmp_path / "pairs.jsonl"
    data.write_text('{"query": "q1", "positive": "p1"}\n{"query": "q2", "positive": "p2"}\n')
    record = create_job(
        ws, EmbeddingJobSpec(name="emb", base_model="all-minilm-l6-v2", dataset=str(data)), start=False
    )
    data.unlink()  # accepted at create, gone when the worker fetches it: the job process raises
    start_job(ws, record.name)
    final = wait_job(ws, record.name, timeout=240)
    assert final.state == "failed"
    assert "does not exist" in (final.error or "")
    log = ws.lake.read_text(f"jobs/{record.name}/log.txt")
    assert "FAILED" in log and "Traceback" in log


def test_a_process_that_dies_before_logging_shows_what_it_printed(ws, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from domainrag.training import jobs
    from domainrag.training.jobs import job_log

    data = tmp_path / "pairs.jsonl"
    data.write_text('{"query": "q1", "positive": "p1"}\n{"query": "q2", "positive": "p2"}\n')
    record = create_job(
        ws, EmbeddingJobSpec(name="emb", base_model="all-minilm-l6-v2", dataset=str(data)), start=False
    )
    crash = "import sys; print('launcher starting'); sys.exit('RuntimeError: FP8 is not available on this machine')"
    monkeypatch.setattr(jobs, "build_launch_command", lambda *a, **k: [sys.executable, "-c", crash])
    start_job(ws, record.name)  # as a launcher that fails before the worker writes its log
    final = wait_job(ws, record.name, timeout=60, poll=0.2)
    assert final.state == "failed"
    assert "exited unexpectedly; the last line it printed: RuntimeError: FP8 is not available" in (final.error or "")
    shown = job_log(ws, record.name)
    assert "the worker wrote no log" in shown and "launcher starting" in shown and "FP8" in shown


def test_unknown_hyperparameter_is_refused_before_anything_is_recorded(ws, tmp_path: Path) -> None:
    from domainrag.training.spec import parse_job_spec

    with pytest.raises(DomainRagError, match="no_such_option"):
        create_job(ws, parse_job_spec({"name": "emb", "algorithm": "embedding", "base_model": "all-minilm-l6-v2",
                                       "dataset": str(tmp_path / "p.jsonl"), "hyperparameters": {"no_such_option": 1}}))
    assert ws.catalog.list("job") == []


def test_invalid_job_name_and_scheme() -> None:
    from pydantic import ValidationError

    from domainrag.errors import StorageError

    with pytest.raises(ValidationError):
        SFTJobSpec(name="bad name!", base_model="m", dataset="x")
    with pytest.raises(StorageError, match="unsupported storage scheme"):
        SFTJobSpec(name="ok", base_model="m", dataset="ftp://host/x")


@pytest.mark.integration
@pytest.mark.slow
def test_cancel_then_resume_finishes_the_job(ws, tmp_path: Path) -> None:
    """A cancelled job's process is stopped; `resume` restarts it and it succeeds with an artifact."""
    import time

    from domainrag.training.jobs import cancel_job, job_alive, refresh_state

    data = tmp_path / "pairs.jsonl"
    data.write_text(
        "".join(
            f'{{"query": "code K{i:03d}?", "positive": "Fault K{i:03d} means valve {i} is stuck."}}\n'
            for i in range(60)
        )
    )
    record = create_job(
        ws,
        EmbeddingJobSpec(
            name="emb",
            base_model="all-minilm-l6-v2",
            dataset=str(data),
            hyperparameters={"epochs": 1, "batch_size": 8},
        ),
    )
    job_id = record.name
    deadline = time.time() + 120
    while refresh_state(ws, job_id).state != "running" and time.time() < deadline:
        time.sleep(0.5)
    cancelled = cancel_job(ws, job_id)
    assert cancelled.state == "cancelled"
    deadline = time.time() + 30
    while job_alive(cancelled) and time.time() < deadline:
        time.sleep(0.5)
    assert not job_alive(cancelled)
    assert refresh_state(ws, job_id).state == "cancelled"

    start_job(ws, job_id, resume=True)
    final = wait_job(ws, job_id, timeout=400)
    assert final.state == "succeeded", final.error
    assert ws.lake.exists(f"{final.artifact_key}/model_card.json")


def test_a_lake_key_dataset_resolves_to_the_lake_from_any_folder(
    ws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "upload" / "pairs.jsonl"
    data.parent.mkdir()
    data.write_text('{"query": "pump flow", "positive": "The pump delivers 12 l/h."}\n' * 4)
    ws.upload_dataset(data.parent, "pairs")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # `raw/pairs/...` is no local path here
    spec = EmbeddingJobSpec(name="emb", base_model="all-minilm-l6-v2", dataset="raw/pairs/pairs.jsonl")
    record = create_job(ws, spec, start=False)
    assert record.spec.dataset == ws.lake.url("raw/pairs/pairs.jsonl")
    with pytest.raises(DatasetError):  # a key that is not in the lake is still a clear error
        create_job(ws, spec.model_copy(update={"dataset": "raw/pairs/missing.jsonl"}), start=False)
