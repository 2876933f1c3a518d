"""Training jobs: a validated spec, a catalogue record with a state machine, and a worker
process per job that writes logs, metrics and artifacts to ``jobs/<job-id>/`` in the lake.

States: queued → running → succeeded | failed | cancelled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from domainrag.errors import DomainRagError
from domainrag.storage.lake import split_scheme
from domainrag.training.launch import LaunchConfig, accelerate_config, build_launch_command
from domainrag.workspace import Workspace
from domainrag.zoo import BASE_MODELS, DEFAULT_EMBEDDER, DEFAULT_LLM

Algorithm = Literal["sft", "embedding", "reranker"]
JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL: tuple[str, ...] = ("succeeded", "failed", "cancelled")


class JobSpec(BaseModel):
    """What to train: validated before anything runs."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    algorithm: Algorithm
    base_model: str
    dataset: str = Field(description="local path or URL (file://, s3://, oss://) of the training data")
    output: str | None = Field(None, description="extra URL to copy the trained artifact to")
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    launch: LaunchConfig | None = Field(None, description="processes/devices/DeepSpeed/FSDP; None = one process")

    @field_validator("dataset", "output")
    @classmethod
    def _scheme(cls, value: str | None) -> str | None:
        if value is not None:
            split_scheme(value)
        return value

    def check_base_model(self) -> None:
        known = BASE_MODELS.get(self.base_model)
        want = "llm" if self.algorithm == "sft" else "embedding"  # a reranker starts from an encoder
        if known is not None and known.kind != want:
            raise DomainRagError(
                f"base model '{self.base_model}' is an {known.kind} model; algorithm '{self.algorithm}' "
                f"needs an {want} model",
                hint=f"use --base-model {DEFAULT_LLM if want == 'llm' else DEFAULT_EMBEDDER}",
            )
        if known is None and not Path(self.base_model).expanduser().exists() and self.base_model.count("/") != 1:
            names = ", ".join(n for n, m in BASE_MODELS.items() if m.kind == want)
            raise DomainRagError(
                f"unknown base model '{self.base_model}'",
                hint=f"use one of: {names}; or a local model folder; or a hub id like org/name",
            )

    def check_encoder_options(self) -> None:
        """Embedding/reranker jobs: option values (loss, matryoshka_dims, synthetic_queries, ...) and, for a
        local base model folder, that it is an encoder rather than a causal LM."""
        if self.algorithm == "sft":
            return
        from domainrag.training._st_common import check_encoder, check_hyperparameters

        check_hyperparameters(self.algorithm, self.hyperparameters)
        if self.base_model not in BASE_MODELS:
            check_encoder(self.base_model)

    def check_sft_options(self) -> None:
        """SFT jobs: hyper-parameter names and values, and that a local base model folder is a causal LM
        with a chat template (torch is not imported: this runs in `job create`)."""
        if self.algorithm != "sft":
            return
        from domainrag.training.sft_params import check_sft_base_model, check_sft_hyperparameters

        check_sft_hyperparameters(self.hyperparameters)
        if self.base_model not in BASE_MODELS:
            check_sft_base_model(self.base_model)

    def check_corpus_dataset(self) -> bool:
        """Embedding/reranker job on a local document corpus (synthetic queries): validate the documents
        now and return True; False when the dataset is a pairs file (or remote) and is checked as such."""
        if self.algorithm == "sft" or split_scheme(self.dataset) not in ("file", "local"):
            return False
        from domainrag.training import synthetic

        path = Path(self.dataset.split("://", 1)[1] if "://" in self.dataset else self.dataset).expanduser()
        mode = synthetic.choose_mode(self.hyperparameters.get("synthetic_queries"), path) if path.exists() else None
        if mode is None:
            return False
        if path.is_dir():  # the worker fetches, hashes (model card) and uploads one dataset file
            from domainrag.errors import DatasetError

            raise DatasetError(
                str(path),
                "a job dataset must be one file; this is a folder of documents",
                hint="put the documents in one JSONL file, one {\"id\": ..., \"title\": ..., \"text\": ...} per line",
            )
        synthetic.load_passages(path)  # unreadable or empty documents fail here
        return True


def new_job_id(name: str) -> str:
    return f"{name}-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:6]}"


def create_job(ws: Workspace, spec: JobSpec, *, start: bool = True) -> dict[str, Any]:
    """Validate, record (queued) and start a job in its own process."""
    spec.check_base_model()
    spec.check_encoder_options()
    spec.check_sft_options()
    from domainrag.training.worker import check_dataset

    if not spec.check_corpus_dataset():
        check_dataset(spec)  # clear error now, not after model loading
    if spec.launch is not None:
        accelerate_config(spec.launch)  # missing DeepSpeed/FSDP files fail here, before anything is recorded
    from domainrag.storage.preflight import preflight, require

    remote = [spec.dataset] if split_scheme(spec.dataset) not in ("file", "local") else []
    require(preflight(reads=remote, writes=[spec.output] if spec.output else []))  # access problems first
    job_id = new_job_id(spec.name)
    ws.lake.write_json(f"jobs/{job_id}/spec.json", spec.model_dump(mode="json"))
    record = ws.catalog.create(
        "job",
        job_id,
        {
            "spec": spec.model_dump(mode="json"),
            "state": "queued",
            "prefix": f"jobs/{job_id}",
            "uri": ws.lake.url(f"jobs/{job_id}"),
        },
    )
    if start:
        record = start_job(ws, job_id)
    return record


def start_job(ws: Workspace, job_id: str, resume: bool = False) -> dict[str, Any]:
    log_dir = ws.settings.workspace / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    out = (log_dir / f"{job_id}.out").open("ab")
    spec = JobSpec.model_validate(ws.catalog.require("job", job_id)["spec"])
    cmd = build_launch_command(job_id, ws.settings.workspace, ws.settings.lake, spec.launch, resume=resume)
    proc = subprocess.Popen(
        cmd,
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    return ws.catalog.update("job", job_id, pid=proc.pid, state="queued", started_at=time.time())


def job_alive(record: dict[str, Any]) -> bool:
    pid = record.get("pid")
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:  # a zombie child of this process counts as dead
        finished, _ = os.waitpid(int(pid), os.WNOHANG)
        return finished == 0
    except ChildProcessError:
        return True


def refresh_state(ws: Workspace, job_id: str) -> dict[str, Any]:
    """Catalogue record, marking a job whose process died without saying so as failed."""
    record = ws.catalog.require("job", job_id)
    if record["state"] in ("queued", "running") and record.get("pid") and not job_alive(record):
        time.sleep(0.2)
        record = ws.catalog.require("job", job_id)
        if record["state"] in ("queued", "running"):
            record = ws.catalog.update(
                "job",
                job_id,
                state="failed",
                error="the job process exited unexpectedly (see `job logs`)",
                finished_at=time.time(),
            )
    return record


def cancel_job(ws: Workspace, job_id: str) -> dict[str, Any]:
    record = refresh_state(ws, job_id)
    if record["state"] in TERMINAL:
        raise DomainRagError(f"job '{job_id}' already {record['state']}")
    if record.get("pid"):
        with contextlib.suppress(ProcessLookupError):  # already gone: nothing to stop
            os.killpg(int(record["pid"]), signal.SIGTERM)
    return ws.catalog.update("job", job_id, state="cancelled", finished_at=time.time())


def wait_job(ws: Workspace, job_id: str, timeout: float | None = None, poll: float = 1.0) -> dict[str, Any]:
    deadline = None if timeout is None else time.time() + timeout
    while True:
        record = refresh_state(ws, job_id)
        if record["state"] in TERMINAL:
            return record
        if deadline is not None and time.time() > deadline:
            raise DomainRagError(f"job '{job_id}' still {record['state']} after {timeout:.0f}s")
        time.sleep(poll)


def job_log(ws: Workspace, job_id: str) -> str:
    key = f"jobs/{job_id}/log.txt"
    return ws.lake.read_text(key) if ws.lake.exists(key) else ""
