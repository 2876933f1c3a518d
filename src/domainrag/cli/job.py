"""domainrag job: training jobs (CreateJob) and their logs."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from domainrag.cli._context import (
    EXIT_FAILED,
    JsonFlag,
    OptionError,
    Waiting,
    command_app,
    console,
    err_console,
    local_time,
    print_json,
    print_rich,
    print_table,
    ws,
)
from domainrag.errors import DomainRagError
from domainrag.evaluation.display import format_duration as duration

if TYPE_CHECKING:
    from domainrag.training.launch import LaunchConfig
    from domainrag.training.spec import JobRecord, JobSpec

app = command_app("job", "Training jobs (fine-tune an LLM, train an embedder).")


@app.command("create")
def job_create(
    name: Annotated[str, typer.Option(help="job name")],
    algorithm: Annotated[str, typer.Option(help="sft | embedding | reranker")],
    base_model: Annotated[str, typer.Option(help="short name, local folder or hub id")],
    dataset: Annotated[str, typer.Option(help="path or URL of the training data")],
    output: Annotated[str | None, typer.Option(help="extra URL to copy the artifact to")] = None,
    hp: Annotated[list[str] | None, typer.Option("--hp", help="hyper-parameter key=value (repeatable)")] = None,
    wait: Annotated[bool, typer.Option(help="wait for the job and stream its log; exit 1 unless it succeeds")] = False,
    num_processes: Annotated[int, typer.Option(help="processes (one per GPU); more than 1 runs accelerate launch")] = 1,
    devices: Annotated[str | None, typer.Option(help='GPU ids, e.g. "0,1", or "all"')] = None,
    mixed_precision: Annotated[str, typer.Option(help="no | fp16 | bf16")] = "no",
    deepspeed_config: Annotated[Path | None, typer.Option(help="DeepSpeed JSON config")] = None,
    fsdp_config: Annotated[Path | None, typer.Option(help="accelerate fsdp_* settings (YAML/JSON)")] = None,
    num_machines: Annotated[int, typer.Option(help="machines the processes are spread over")] = 1,
    machine_rank: Annotated[int, typer.Option(help="rank of the machine it runs on (0 is the main one)")] = 0,
    main_process_ip: Annotated[str | None, typer.Option(help="address of the rank-0 machine")] = None,
    main_process_port: Annotated[int | None, typer.Option(help="rendezvous port on it (default 29500)")] = None,
) -> None:
    """Create and start a training job (CreateJob)."""
    from domainrag.training.jobs import create_job
    from domainrag.training.launch import LaunchConfig

    launch = LaunchConfig(num_processes=num_processes, devices=devices, mixed_precision=mixed_precision,
                          deepspeed_config=deepspeed_config, fsdp_config=fsdp_config, num_machines=num_machines,
                          machine_rank=machine_rank, main_process_ip=main_process_ip,
                          main_process_port=main_process_port)
    spec = job_spec(name=name, algorithm=algorithm, base_model=base_model, dataset=dataset, output=output,
                    hyperparameters=parse_hp(hp or []), launch=None if launch == LaunchConfig() else launch)
    with Waiting(f"starting job {name}"):
        record = create_job(ws(), spec)
    # The id alone on the first line of stdout, for scripts: id=$(domainrag job create ... | head -n 1)
    console.out(record.name, highlight=False)
    err_console.print(f"job [bold]{record.name}[/] {record.state} (logs: domainrag job logs {record.name} -f)")
    if wait:
        _exit_unless_succeeded(follow_job(record.name))


def job_spec(*, name: str, algorithm: str, base_model: str, dataset: str, output: str | None = None,
             hyperparameters: dict[str, Any] | None = None, launch: LaunchConfig | None = None) -> JobSpec:
    """The job specification from the command's options (the one place that builds a JobSpec)."""
    from domainrag.training.spec import parse_job_spec

    return parse_job_spec({"name": name, "algorithm": algorithm, "base_model": base_model, "dataset": dataset,
                           "output": output, "hyperparameters": hyperparameters or {}, "launch": launch})


def parse_hp(items: list[str]) -> dict[str, Any]:
    """--hp key=value items → {key: value}; values are JSON when they parse as JSON, else strings."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise OptionError(f"--hp {item!r} is not key=value")
        key, value = item.split("=", 1)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def follow_job(job_id: str) -> JobRecord:
    """Stream a job's log to the console until it ends; returns its final record. A spinner (on a terminal)
    shows the job's state and time while the log is quiet (the worker loading its model, say)."""
    from domainrag.training.jobs import job_log, refresh_state

    seen = 0
    with Waiting(f"job {job_id}: waiting for its log") as wait:
        while True:
            text = job_log(ws(), job_id)
            if len(text) > seen:
                console.out(text[seen:], end="", highlight=False)
                seen = len(text)
            record = refresh_state(ws(), job_id)
            if record.terminal:
                break
            since = record.running_at or record.created_at
            if since is not None and console.is_terminal:
                wait.update(f"job {job_id} {record.state} for {duration(time.time() - since)}")
            time.sleep(1)
    text = job_log(ws(), job_id)
    console.out(text[seen:], end="", highlight=False)
    color = "green" if record.state == "succeeded" else "red"
    console.print(f"job {job_id}: [{color}]{record.state}[/]" + (f" — {record.error}" if record.error else ""))
    return record


def _exit_unless_succeeded(record: JobRecord) -> None:
    """A waited-for job that failed or was cancelled is a failed operation (exit status 1)."""
    if record.state != "succeeded":
        raise typer.Exit(EXIT_FAILED)


@app.command("list")
def job_list(as_json: JsonFlag = False) -> None:
    """Jobs with their algorithm, base model and state."""
    from domainrag.training.jobs import list_jobs

    jobs = list_jobs(ws())
    if as_json:
        print_json([j.to_dict() for j in jobs])
        return
    rows = [{"name": j.name, "algorithm": j.spec.algorithm, "base_model": j.spec.base_model, "state": j.state,
             "created_at": j.created_at, "duration": duration(_seconds(j))} for j in jobs]
    print_table(rows, ["name", "algorithm", "base_model", "state", "created_at", "duration"], "jobs")


def _seconds(record: JobRecord) -> float | None:
    """How long the job ran (until now while it runs); None before it started."""
    start = record.running_at or record.started_at
    if start is None:
        return None
    end = record.finished_at or (None if record.terminal else time.time())
    return None if end is None else end - start


def job_summary(record: JobRecord) -> dict[str, str]:
    """What 'job show' prints: the fields a person asks about, in words (local dates, durations, the
    artifact and the loss plot as lake URLs)."""
    w = ws()
    out = {"job": record.name, "algorithm": record.spec.algorithm, "base model": record.spec.base_model,
           "dataset": record.spec.dataset, "state": record.state,
           "created": local_time(record.created_at), "started": local_time(record.running_at or record.started_at),
           "finished": local_time(record.finished_at), "duration": duration(_seconds(record))}
    if record.error:
        out["error"] = record.error
    for key, value in (record.metrics or {}).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[f"metric {key}"] = f"{value:.4g}" if isinstance(value, float) else str(value)
        elif isinstance(value, str) and len(value) < 120:
            out[f"metric {key}"] = value
    if record.artifact_key:
        out["artifact"] = f"{w.lake.url(record.artifact_key)} ({record.artifact_format})"
    plot = f"{record.prefix}/loss.png"
    out["loss plot"] = w.lake.url(plot) if w.lake.exists(plot) else "none yet (written when the job ends)"
    out["log"] = f"domainrag job logs {record.name}"
    return out


@app.command("show")
def job_show(job_id: Annotated[str, typer.Argument(help="job id (from 'job list')")],
             as_json: JsonFlag = False) -> None:
    """A job's summary: algorithm, state, dates, duration, final metrics, artifact and loss plot."""
    from domainrag.training.jobs import refresh_state

    record = refresh_state(ws(), job_id)
    if as_json:
        print_json(record.to_dict())
        return
    table = Table(title=f"job {record.name}", show_header=False)
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    for key, value in job_summary(record).items():
        table.add_row(key, value)
    print_rich(table)


@app.command("logs")
def job_logs(
    job_id: Annotated[str, typer.Argument(help="job id")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing until the job ends")] = False,
) -> None:
    """Print a job's log (with -f, until the job ends)."""
    from domainrag.training.jobs import job_log

    ws().catalog.require("job", job_id)
    if follow:
        follow_job(job_id)
    else:
        console.out(job_log(ws(), job_id), end="", highlight=False)


@app.command("cancel")
def job_cancel(job_id: Annotated[str, typer.Argument(help="job id")]) -> None:
    """Stop a running job."""
    from domainrag.training.jobs import cancel_job

    console.print(f"job {job_id}: {cancel_job(ws(), job_id).state}")


@app.command("resume")
def job_resume(
    job_id: Annotated[str, typer.Argument(help="job id")],
    wait: Annotated[bool, typer.Option(help="wait for the job and stream its log; exit 1 unless it succeeds")] = False,
) -> None:
    """Continue a failed or cancelled job from its last checkpoint."""
    from domainrag.training.jobs import refresh_state, start_job

    record = refresh_state(ws(), job_id)
    if record.state not in ("failed", "cancelled"):
        raise DomainRagError(f"job '{job_id}' is {record.state}; only failed or cancelled jobs resume")
    start_job(ws(), job_id, resume=True)
    console.print(f"job {job_id} resumed")
    if wait:
        _exit_unless_succeeded(follow_job(job_id))
