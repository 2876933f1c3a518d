"""``domainrag``: one CLI over the data lake, training jobs, indexes and RAG apps.

Command groups mirror the cloud APIs they replace: ``job create`` (CreateJob), ``model create``
(CreateModel), ``index create`` (PUT /index), ``ingest`` (POST /_bulk), ``app create``
(CreateApplication), ``app invoke --stream`` (InvokeApplication).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from domainrag.cli.deploy import register as register_deploy
from domainrag.cli.doctor import register as register_doctor
from domainrag.cli.eval import register as register_eval
from domainrag.cli.keys import register as register_keys
from domainrag.errors import DomainRagError

app = typer.Typer(help=__doc__, no_args_is_help=True, pretty_exceptions_enable=False)
job_app = typer.Typer(help="Training jobs (fine-tune an LLM, train an embedder).", no_args_is_help=True)
model_app = typer.Typer(help="Registered models (versioned artifacts in the lake).", no_args_is_help=True)
index_app = typer.Typer(help="Vector indexes.", no_args_is_help=True)
app_app = typer.Typer(help="RAG applications.", no_args_is_help=True)
dataset_app = typer.Typer(help="Datasets in the data lake.", no_args_is_help=True)
app.add_typer(job_app, name="job")
app.add_typer(model_app, name="model")
app.add_typer(index_app, name="index")
app.add_typer(app_app, name="app")
app.add_typer(dataset_app, name="dataset")
register_doctor(app)
register_keys(app)
register_eval(app)
register_deploy(model_app)

console = Console()
err_console = Console(stderr=True)

WorkspaceOpt = Annotated[
    Path | None, typer.Option("--workspace", "-w", help="workspace folder (default $DOMAINRAG_HOME or ./.domainrag)")
]
_state: dict[str, Any] = {}


@app.callback()
def _root(workspace: WorkspaceOpt = None) -> None:
    _state["workspace"] = workspace


def ws():
    from domainrag.workspace import Workspace

    if "ws" not in _state:
        _state["ws"] = Workspace.open(_state.get("workspace"))
    return _state["ws"]


def _table(rows: list[dict[str, Any]], columns: list[str], title: str) -> None:
    table = Table(title=title)
    for c in columns:
        table.add_column(c)
    for r in rows:
        table.add_row(*[_fmt(r.get(c)) for c in columns])
    console.print(table)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value > 1e9:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(value))
    if isinstance(value, (dict, list)):
        return json.dumps(value)[:80]
    return str(value)


def _json(obj: Any) -> None:
    console.print_json(json.dumps(obj, default=str))


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


# -- datasets -----------------------------------------------------------------------------------
@dataset_app.command("upload")
def dataset_upload(
    source: Annotated[Path, typer.Argument(help="file or folder to upload")],
    name: Annotated[str, typer.Option(help="dataset name (raw/<name>/ in the lake)")],
) -> None:
    """Upload a local file or folder to raw/<name>/ in the data lake."""
    url, n_files = ws().upload_dataset(source, name)
    console.print(f"uploaded {n_files} file(s) to {url}")


@dataset_app.command("list")
def dataset_list() -> None:
    _table(ws().catalog.list("dataset"), ["name", "uri", "files", "created_at"], "datasets")


# -- jobs -----------------------------------------------------------------------------------------
@job_app.command("create")
def job_create(
    name: Annotated[str, typer.Option(help="job name")],
    algorithm: Annotated[str, typer.Option(help="sft | embedding | reranker")],
    base_model: Annotated[str, typer.Option(help="short name, local folder or hub id")],
    dataset: Annotated[str, typer.Option(help="path or URL of the training data")],
    output: Annotated[str | None, typer.Option(help="extra URL to copy the artifact to")] = None,
    hp: Annotated[list[str] | None, typer.Option("--hp", help="hyper-parameter key=value (repeatable)")] = None,
    wait: Annotated[bool, typer.Option(help="wait for the job and stream its log")] = False,
    num_processes: Annotated[int, typer.Option(help="processes (one per GPU); >1 runs `accelerate launch`")] = 1,
    devices: Annotated[str | None, typer.Option(help='GPU ids, e.g. "0,1", or "all"')] = None,
    mixed_precision: Annotated[str, typer.Option(help="no | fp16 | bf16")] = "no",
    deepspeed_config: Annotated[Path | None, typer.Option(help="DeepSpeed JSON config")] = None,
    fsdp_config: Annotated[Path | None, typer.Option(help="accelerate fsdp_* settings (YAML/JSON)")] = None,
) -> None:
    """Create and start a training job (CreateJob)."""
    from domainrag.training.jobs import JobSpec, create_job
    from domainrag.training.launch import LaunchConfig

    launch = LaunchConfig(num_processes=num_processes, devices=devices, mixed_precision=mixed_precision,
                          deepspeed_config=deepspeed_config, fsdp_config=fsdp_config)
    spec = JobSpec(
        name=name,
        algorithm=algorithm,
        base_model=base_model,
        dataset=dataset,
        output=output,
        hyperparameters=_parse_hp(hp or []),
        launch=None if launch == LaunchConfig() else launch,
    )
    record = create_job(ws(), spec)
    console.print(f"job [bold]{record['name']}[/] {record['state']} (logs: domainrag job logs {record['name']} -f)")
    if wait:
        _follow(record["name"])


def _parse_hp(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise DomainRagError(f"--hp {item!r} is not key=value")
        key, value = item.split("=", 1)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _follow(job_id: str) -> dict[str, Any]:
    from domainrag.training.jobs import TERMINAL, job_log, refresh_state

    seen = 0
    while True:
        text = job_log(ws(), job_id)
        if len(text) > seen:
            console.out(text[seen:], end="", highlight=False)
            seen = len(text)
        record = refresh_state(ws(), job_id)
        if record["state"] in TERMINAL:
            text = job_log(ws(), job_id)
            console.out(text[seen:], end="", highlight=False)
            color = "green" if record["state"] == "succeeded" else "red"
            console.print(
                f"job {job_id}: [{color}]{record['state']}[/]"
                + (f" — {record.get('error')}" if record.get("error") else "")
            )
            return record
        time.sleep(1)


@job_app.command("list")
def job_list() -> None:
    from domainrag.training.jobs import refresh_state

    rows = [refresh_state(ws(), r["name"]) for r in ws().catalog.list("job")]
    for r in rows:
        r["algorithm"] = r["spec"]["algorithm"]
        r["base_model"] = r["spec"]["base_model"]
    _table(rows, ["name", "algorithm", "base_model", "state", "created_at"], "jobs")


@job_app.command("show")
def job_show(job_id: str) -> None:
    from domainrag.training.jobs import refresh_state

    _json(refresh_state(ws(), job_id))


@job_app.command("logs")
def job_logs(job_id: str, follow: Annotated[bool, typer.Option("--follow", "-f")] = False) -> None:
    from domainrag.training.jobs import job_log

    ws().catalog.require("job", job_id)
    if follow:
        _follow(job_id)
    else:
        console.out(job_log(ws(), job_id), end="", highlight=False)


@job_app.command("cancel")
def job_cancel(job_id: str) -> None:
    from domainrag.training.jobs import cancel_job

    console.print(f"job {job_id}: {cancel_job(ws(), job_id)['state']}")


@job_app.command("resume")
def job_resume(job_id: str, wait: Annotated[bool, typer.Option()] = False) -> None:
    """Continue a failed or cancelled job from its last checkpoint."""
    from domainrag.training.jobs import refresh_state, start_job

    record = refresh_state(ws(), job_id)
    if record["state"] not in ("failed", "cancelled"):
        raise DomainRagError(f"job '{job_id}' is {record['state']}; only failed or cancelled jobs resume")
    start_job(ws(), job_id, resume=True)
    console.print(f"job {job_id} resumed")
    if wait:
        _follow(job_id)


# -- models ---------------------------------------------------------------------------------------
@model_app.command("create")
def model_create(
    name: Annotated[str, typer.Option()],
    source: Annotated[str, typer.Option(help="job | path | remote")] = "job",
    job_id: Annotated[str | None, typer.Option(help="job whose artifact to register")] = None,
    path: Annotated[Path | None, typer.Option(help="model folder (with --source path)")] = None,
    kind: Annotated[str | None, typer.Option(help="llm | embedding (with --source path)")] = None,
    base_model: Annotated[str | None, typer.Option(help="base model of a LoRA adapter folder")] = None,
    new_version: Annotated[bool, typer.Option(help="add a version to an existing model")] = False,
    endpoint: Annotated[
        str | None,
        typer.Option(help='JSON endpoint for --source remote, e.g. {"type": "openai", "base_url": ..., "model": ...}'),
    ] = None,
) -> None:
    """Register a model from a job's artifact or a local folder (CreateModel)."""
    from domainrag.serving.models import create_model

    record = create_model(
        ws(), name, source=source, job_id=job_id, path=path, kind=kind, base_model=base_model,
        new_version=new_version, endpoint=_load_json(endpoint, "--endpoint") if endpoint else None,
    )
    where = record.get("uri") or json.dumps(record.get("endpoint"))
    console.print(f"model [bold]{name}[/] v{record['version']} ({record['kind']}) at {where}")


@model_app.command("list")
def model_list() -> None:
    _table(ws().catalog.list("model"), ["name", "version", "kind", "format", "base_model", "uri"], "models")


@model_app.command("show")
def model_show(name: str) -> None:
    _json(ws().catalog.require("model", name))


# -- indexes --------------------------------------------------------------------------------------
@index_app.command("create")
def index_create(
    name: str,
    embedding_model: Annotated[str, typer.Option(help="registered or base embedding model")] = "all-minilm-l6-v2",
    store: Annotated[
        str, typer.Option(help='store type or JSON config, e.g. {"type": "opensearch", ...}')
    ] = "embedded",
) -> None:
    """Create an index; the vector dimension is read from the embedding model (PUT /index)."""
    from domainrag.index.manage import create_index

    cfg: Any = json.loads(store) if store.strip().startswith("{") else store
    record = create_index(ws(), name, embedding_model, cfg)
    console.print(
        f"index [bold]{name}[/]: {record['dimension']}-d vectors from {embedding_model}, "
        f"store {record['store']['type']}"
    )


@index_app.command("list")
def index_list() -> None:
    rows = ws().catalog.list("index")
    for r in rows:
        r["store_type"] = r["store"]["type"]
    _table(rows, ["name", "embedding_model", "dimension", "store_type", "chunks", "documents"], "indexes")


@index_app.command("stats")
def index_stats(name: str) -> None:
    _json({**ws().store(name).stats(), "embedding_model": ws().catalog.require("index", name)["embedding_model"]})


@index_app.command("delete")
def index_delete(name: str, yes: Annotated[bool, typer.Option("--yes", "-y")] = False) -> None:
    from domainrag.index.manage import delete_index

    if not yes:
        typer.confirm(f"delete index '{name}' and its chunks?", abort=True)
    delete_index(ws(), name)
    console.print(f"index {name} deleted")


@app.command("ingest")
def ingest_cmd(
    paths: Annotated[list[str], typer.Argument(help="files, folders or s3:// / oss:// URLs (txt, md, html, jsonl)")],
    index: Annotated[str, typer.Option(help="target index")],
    batch_size: Annotated[int, typer.Option()] = 64,
    max_words: Annotated[int, typer.Option(help="chunk size in words")] = 120,
    overlap_words: Annotated[int, typer.Option(help="overlap between chunks in words")] = 20,
) -> None:
    """Load, chunk, embed and bulk-write documents (POST /_bulk). Re-running resumes."""
    from domainrag.index.manage import ingest

    with progress_bar() as bar:
        task = bar.add_task(f"ingest → {index}", total=None)
        report = ingest(
            ws(),
            index,
            paths,
            batch_size=batch_size,
            max_words=max_words,
            overlap_words=overlap_words,
            progress=lambda d, t: bar.update(task, completed=d, total=t),
        )
    for e in report.errors:
        err_console.print(f"[yellow]skipped:[/] {e}")
    console.print(
        f"{report.documents} documents → {report.chunks} chunks: {report.written} written, "
        f"{report.skipped_existing} already present, {report.deleted_stale} stale removed, "
        f"{len(report.errors)} errors"
    )


# -- apps -----------------------------------------------------------------------------------------
@app_app.command("create")
def app_create(
    name: Annotated[str, typer.Option()],
    model: Annotated[str, typer.Option(help="registered LLM or base model")],
    retrieval: Annotated[
        str, typer.Option(help='JSON, e.g. {"vector_store": "embedded", "index": "rag_vectors", "top_k": 5}')
    ],
    generation: Annotated[
        str | None, typer.Option(help='JSON, e.g. {"temperature": 0.1, "max_new_tokens": 200}')
    ] = None,
    replace: Annotated[bool, typer.Option(help="overwrite an existing app")] = False,
) -> None:
    """Create a RAG application (CreateApplication)."""
    from domainrag.serving.apps import AppSpec, create_app

    spec = AppSpec.model_validate(
        {
            "name": name,
            "model": model,
            "retrieval": _load_json(retrieval, "--retrieval"),
            **({"generation": _load_json(generation, "--generation")} if generation else {}),
        }
    )
    create_app(ws(), spec, replace=replace)
    console.print(
        f"app [bold]{name}[/]: model {model}, index {spec.retrieval.index}, top_k {spec.retrieval.top_k}, "
        f"temperature {spec.generation.temperature}"
    )


def _load_json(text: str, option: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DomainRagError(f"{option} is not valid JSON: {exc.msg} at column {exc.colno}") from exc


@app_app.command("list")
def app_list() -> None:
    rows = ws().catalog.list("app")
    for r in rows:
        r["index"] = r["retrieval"]["index"]
        r["top_k"] = r["retrieval"]["top_k"]
    _table(rows, ["name", "model", "index", "top_k", "created_at"], "apps")


@app_app.command("show")
def app_show(name: str) -> None:
    _json(ws().catalog.require("app", name))


@app_app.command("invoke")
def app_invoke(
    name: str,
    query: Annotated[str, typer.Option(help="the question")],
    stream: Annotated[bool, typer.Option(help="print tokens as they are generated")] = True,
    top_k: Annotated[int | None, typer.Option()] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the answer and references as JSON")] = False,
) -> None:
    """Ask an app a question (InvokeApplication --stream)."""
    from domainrag.serving.apps import load_app

    rag = load_app(ws(), name)
    print_answer(rag, query, stream=stream and not as_json, top_k=top_k, as_json=as_json)


def print_answer(rag: Any, query: str, *, stream: bool = True, top_k: int | None = None, as_json: bool = False) -> str:
    text, refs = "", []
    for event in rag.stream(query, top_k=top_k):
        if event.type == "token":
            text += event.text
            if stream:
                console.out(event.text, end="", highlight=False)
        else:
            refs = event.references
    if as_json:
        _json({"answer": text, "references": refs})
        return text
    if not stream:
        console.out(text, end="", highlight=False)
    console.print()
    table = Table(title="sources", show_lines=False)
    for col in ("#", "document", "chunk id", "score"):
        table.add_column(col)
    for r in refs:
        table.add_row(str(r["citation"]), r["document"], r["chunk_id"], f"{r['score']:.4f}")
    console.print(table)
    return text


# -- serving --------------------------------------------------------------------------------------
@app.command("serve")
def serve(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
) -> None:
    """Run the HTTP API (FastAPI; OpenAPI docs at /docs)."""
    import uvicorn

    from domainrag.serving.api import create_api

    uvicorn.run(create_api(ws()), host=host, port=port, log_level="info")


@app.command("quickstart")
def quickstart(
    fast: Annotated[bool, typer.Option(help="fewer training steps and questions (smoke test)")] = False,
) -> None:
    """Run the whole loop on the shipped sample domain and print a base-vs-fine-tuned table."""
    from domainrag.cli.quickstart import run_quickstart

    run_quickstart(ws(), console, fast=fast)


def _quiet_libraries() -> None:
    """Library progress bars and deprecation chatter drown our own output on the terminal."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("LANCE_LOG", "error")
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)


def main() -> None:
    _quiet_libraries()
    try:
        app()
    except DomainRagError as exc:
        err_console.print(f"[bold red]error:[/] {exc.message}")
        if exc.hint:
            err_console.print(f"[yellow]hint:[/] {exc.hint}")
        sys.exit(2)
    except Exception as exc:  # pydantic validation errors etc.: message, not traceback
        from pydantic import ValidationError

        if isinstance(exc, ValidationError):
            err_console.print("[bold red]error:[/] invalid input")
            for e in exc.errors():
                loc = ".".join(str(p) for p in e["loc"])
                err_console.print(f"  {loc}: {e['msg']}")
            sys.exit(2)
        raise


if __name__ == "__main__":
    main()
