"""Training jobs: create (validate, record, start), watch, cancel and resume.

Each job runs in its own worker process (:mod:`domainrag.training.worker`) that writes logs, metrics
and artifacts to ``jobs/<job-id>/`` in the lake and its state to the catalogue record
(:class:`~domainrag.training.spec.JobRecord`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

from domainrag.errors import DomainRagError
from domainrag.storage.lake import split_scheme
from domainrag.storage.preflight import preflight, require
from domainrag.training.launch import accelerate_config, build_launch_command, check_launch_dependencies
from domainrag.training.spec import JobRecord, JobSpec
from domainrag.workspace import Workspace


def new_job_id(name: str) -> str:
    return f"{name}-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:6]}"


def create_job(ws: Workspace, spec: JobSpec, *, start: bool = True) -> JobRecord:
    """Check the inputs, record the job (queued) and start it in its own process.

    Everything that can be checked without loading a model fails here, before anything is recorded:
    the base model's kind, the dataset's format (or the documents of a corpus), launch files, access.
    """
    spec = _resolve_lake_dataset(ws, spec)
    spec.check_base_model()
    if not spec.check_corpus_dataset():
        spec.check_dataset()
    if spec.launch is not None:
        accelerate_config(spec.launch)  # missing DeepSpeed/FSDP files fail here
        check_launch_dependencies(spec.launch)
    remote = [spec.dataset] if split_scheme(spec.dataset) not in ("file", "local") else []
    writes = [spec.output] if spec.output else []
    if not ws.lake.is_local:  # the job's spec, logs, checkpoints and artifact go to the lake
        writes.append(ws.lake.url("jobs"))
    require(preflight(reads=remote, writes=writes))  # access problems first, before anything is recorded
    job_id = new_job_id(spec.name)
    stored = spec.model_dump(mode="json")
    ws.lake.write_json(f"jobs/{job_id}/spec.json", stored)
    data = {"spec": stored, "state": "queued", "prefix": f"jobs/{job_id}", "uri": ws.lake.url(f"jobs/{job_id}")}
    record = JobRecord.model_validate(ws.catalog.create("job", job_id, data))
    return start_job(ws, job_id) if start else record


def _resolve_lake_dataset(ws: Workspace, spec: JobSpec) -> JobSpec:
    """A ``--dataset`` given as a lake key (``raw/<dataset>/...``, as ``dataset upload`` writes them) that is not
    a local path means the object in the lake, wherever the command runs from."""
    key = spec.dataset.strip()
    if split_scheme(key) != "file" or Path(key).exists() or not key.startswith("raw/") or not ws.lake.exists(key):
        return spec
    return spec.model_copy(update={"dataset": ws.lake.url(key)})


def load_job(ws: Workspace, job_id: str) -> JobRecord:
    """The catalogue record of ``job_id`` (NotFoundError naming the known jobs otherwise)."""
    return JobRecord.model_validate(ws.catalog.require("job", job_id))


def list_jobs(ws: Workspace) -> list[JobRecord]:
    """Every job in the catalogue, oldest first, with states refreshed."""
    return [refresh_state(ws, r["name"]) for r in ws.catalog.list("job")]


def _update(ws: Workspace, job_id: str, **fields: object) -> JobRecord:
    return JobRecord.model_validate(ws.catalog.update("job", job_id, **fields))


def start_job(ws: Workspace, job_id: str, resume: bool = False) -> JobRecord:
    """Start (or, with ``resume``, restart from its last checkpoint) the worker process of a recorded job."""
    spec = load_job(ws, job_id).job_spec()
    log_dir = ws.settings.workspace / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    cmd = build_launch_command(job_id, ws.settings.workspace, ws.settings.lake, spec.launch, resume=resume)
    with (log_dir / f"{job_id}.out").open("ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    return _update(ws, job_id, pid=proc.pid, state="queued", started_at=time.time())


def job_alive(record: JobRecord) -> bool:
    """True while the job's process runs (a zombie child of this process counts as dead)."""
    if not record.pid:
        return False
    try:
        os.kill(record.pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        finished, _ = os.waitpid(record.pid, os.WNOHANG)
        return finished == 0
    except ChildProcessError:
        return True


def refresh_state(ws: Workspace, job_id: str) -> JobRecord:
    """Catalogue record, marking a job whose process died without saying so as failed."""
    record = load_job(ws, job_id)
    if record.state in ("queued", "running") and record.pid and not job_alive(record):
        time.sleep(0.2)
        record = load_job(ws, job_id)
        if record.state in ("queued", "running"):
            last = _last_output_line(ws, job_id)
            record = _update(
                ws,
                job_id,
                state="failed",
                error="the job process exited unexpectedly" + (f"; the last line it printed: {last}" if last else "")
                + " (see `job logs`)",
                finished_at=time.time(),
            )
    return record


def _process_output(ws: Workspace, job_id: str) -> Path:
    """What the job's process (the launcher and the worker) printed: where a crash before logging shows."""
    return ws.settings.workspace / "logs" / f"{job_id}.out"


def _last_output_line(ws: Workspace, job_id: str) -> str:
    """The last non-empty line the job's process printed (a traceback ends with its exception), or ""."""
    path = _process_output(ws, job_id)
    if not path.is_file():
        return ""
    with path.open("rb") as fh:
        fh.seek(max(0, path.stat().st_size - 8192))
        lines = [line.strip() for line in fh.read().decode("utf-8", "replace").splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def cancel_job(ws: Workspace, job_id: str) -> JobRecord:
    """Stop a queued or running job's process group and mark it cancelled."""
    record = refresh_state(ws, job_id)
    if record.terminal:
        raise DomainRagError(f"job '{job_id}' already {record.state}")
    if record.pid:
        with contextlib.suppress(ProcessLookupError):  # already gone: nothing to stop
            os.killpg(record.pid, signal.SIGTERM)
    return _update(ws, job_id, state="cancelled", finished_at=time.time())


def wait_job(ws: Workspace, job_id: str, timeout: float | None = None, poll: float = 1.0) -> JobRecord:
    """Poll until the job reaches a terminal state (DomainRagError after ``timeout`` seconds)."""
    deadline = None if timeout is None else time.time() + timeout
    while True:
        record = refresh_state(ws, job_id)
        if record.terminal:
            return record
        if deadline is not None and time.time() > deadline:
            raise DomainRagError(f"job '{job_id}' still {record.state} after {timeout:.0f}s")
        time.sleep(poll)


def job_log(ws: Workspace, job_id: str) -> str:
    """The job's log so far ("" before the worker wrote anything). A job that failed before its worker wrote
    a line (a launcher error, a crash at import) shows what its process printed instead."""
    key = f"jobs/{job_id}/log.txt"
    log = ws.lake.read_text(key) if ws.lake.exists(key) else ""
    output = _process_output(ws, job_id)
    if not log and load_job(ws, job_id).state == "failed" and output.is_file():
        return f"(the worker wrote no log; the job's process printed, in {output}:)\n" + output.read_text(
            encoding="utf-8", errors="replace")
    return log
