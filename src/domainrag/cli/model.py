"""domainrag model: registered models (CreateModel) and the backend that serves each LLM's generations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from domainrag.cli._context import (
    JsonFlag,
    OptionError,
    Waiting,
    command_app,
    console,
    load_json,
    print_record,
    print_rows,
    ws,
)

app = command_app("model", "Registered models (versioned artifacts in the lake).")


@app.command("create")
def model_create(
    name: Annotated[str, typer.Option(help="model name (apps and indexes refer to it)")],
    source: Annotated[str, typer.Option(help="job | path | remote")] = "job",
    job_id: Annotated[str | None, typer.Option(help="job whose artifact to register")] = None,
    path: Annotated[Path | None, typer.Option(help="model folder (with --source path)")] = None,
    kind: Annotated[str | None, typer.Option(help="llm | embedding | reranker (with --source path; default: "
                                                  "detected from the folder)")] = None,
    base_model: Annotated[str | None, typer.Option(help="base model of a LoRA adapter folder")] = None,
    new_version: Annotated[bool, typer.Option(help="add a version to an existing model")] = False,
    endpoint: Annotated[
        str | None,
        typer.Option(help='JSON endpoint for --source remote, e.g. {"type": "openai", "base_url": ..., "model": ...}'),
    ] = None,
) -> None:
    """Register a model from a job's artifact or a local folder (CreateModel)."""
    from domainrag.serving.models import create_model

    with Waiting(f"registering model {name} (copying and hashing its weights)"):
        record = create_model(
            ws(), name, source=source, job_id=job_id, path=path, kind=kind, base_model=base_model,
            new_version=new_version, endpoint=load_json(endpoint, "--endpoint") if endpoint else None,
        )
    where = record.get("uri") or json.dumps(record.get("endpoint"))
    console.print(f"model [bold]{name}[/] v{record['version']} ({record['kind']}) at {where}")


@app.command("list")
def model_list(as_json: JsonFlag = False) -> None:
    """Registered models with their latest version."""
    print_rows(ws().catalog.list("model"), ["name", "version", "kind", "format", "base_model", "uri"], "models",
               as_json)


@app.command("show")
def model_show(name: Annotated[str, typer.Argument(help="registered model")], as_json: JsonFlag = False) -> None:
    """A model's record: latest version, kind, format, base model, location and endpoint."""
    print_record(ws().catalog.require("model", name), f"model {name}", as_json)


@app.command("deploy")
def model_deploy(
    name: Annotated[str, typer.Argument(help="registered LLM")],
    endpoint: Annotated[
        str | None,
        typer.Option(help='JSON: {"type": "transformers"}, {"type": "openai", "base_url": "http://host:8000/v1", '
                     '"model": "..."} or {"type": "llamacpp", "gguf": "<file or base model>", "n_ctx": 2048}. '
                     "Omitted: the in-process backends available are timed on this CPU and the fastest is kept"),
    ] = None,
) -> None:
    """Serve a model's generations in-process, from an OpenAI-compatible server, or with llama.cpp.

    The endpoint is validated first (weights verified, package present, or server reachable and
    serving the model). Remote keys are read from $DOMAINRAG_REMOTE_API_KEY (or the variable
    named by "api_key_env") at request time and never stored.
    """
    from domainrag.serving.backends import deploy_model, endpoint_for

    with Waiting("timing backends" if endpoint is None else f"checking the endpoint of {name}") as wait:
        record = deploy_model(ws(), name, endpoint, progress=wait.update)
    for row in (record.get("backend_measurement") or {}).get("candidates", []) if endpoint is None else []:
        figure = f"{row['total_s']:.2f} s (first token {row['ttft_s']:.2f} s)" if "total_s" in row else row["error"]
        console.print(f"  {row['backend']}: {figure}")
    console.print(f"model [bold]{name}[/] → {_describe(endpoint_for(ws(), name))}")


@app.command("undeploy")
def model_undeploy(name: Annotated[str, typer.Argument(help="registered LLM")]) -> None:
    """Drop a model's endpoint: it runs in-process with transformers again."""
    from domainrag.serving.backends import undeploy_model

    undeploy_model(ws(), name)
    console.print(f"model [bold]{name}[/] → in-process transformers")


def _describe(cfg: object) -> str:
    from domainrag.serving.backends import LlamaCppEndpoint, OpenAIEndpoint

    if isinstance(cfg, OpenAIEndpoint):
        return f"OpenAI-compatible server {cfg.base_url} (model {cfg.model}, key from ${cfg.api_key_env})"
    if isinstance(cfg, LlamaCppEndpoint):
        return f"llama.cpp {cfg.gguf}{f' as {cfg.convert}' if cfg.convert else ''} (n_ctx {cfg.n_ctx})"
    return f"in-process transformers ({getattr(cfg, 'dtype', 'auto')})"


@app.command("export")
def model_export(
    name: Annotated[str, typer.Argument(help="registered LLM or base model")],
    fmt: Annotated[str, typer.Option("--format", help="hf (transformers / vLLM folder) | gguf (llama.cpp file)")],
    out: Annotated[Path | None, typer.Option(help="output folder (new or empty; see --force)")] = None,
    lake_key: Annotated[str | None, typer.Option(help="lake key to write the export under, instead of --out")] = None,
    quantization: Annotated[str, typer.Option(help="gguf: f16 | f32 | bf16 | q8_0 | q4_0")] = "f16",
    dtype: Annotated[str, typer.Option(help="hf: float32 | bfloat16 | float16")] = "float32",
    force: Annotated[bool, typer.Option(help="replace a non-empty output folder or lake key")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Write a model, its LoRA adapter merged in, for another serving engine.

    hf: safetensors, config, tokenizer and a model card, which transformers and vLLM load as they are.
    gguf: one GGUF file for llama.cpp (llama-server, llama-cpp-python, or a llamacpp endpoint).
    """
    from domainrag.serving.export import ExportError, check_options, export_model

    try:
        check_options(fmt, quantization, dtype)
    except ExportError as exc:  # a wrong option value is a usage error (exit status 2)
        raise OptionError(exc.message, hint=exc.hint) from None
    with Waiting(f"exporting {name} as {fmt}") as wait:
        result = export_model(ws(), name, fmt, out=out, lake_key=lake_key, quantization=quantization, dtype=dtype,
                              force=force, progress=wait.update)
    if as_json:
        print_record(result, f"export of {name}", True)
        return
    console.print(f"model [bold]{name}[/] exported as {fmt} to {result['location']} ({', '.join(result['files'])})")
