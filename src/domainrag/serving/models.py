"""Model registration (CreateModel): from a finished job's artifact, a local folder, or a remote endpoint."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, get_args

from domainrag.errors import DomainRagError
from domainrag.serving.backends import (
    ENDPOINT_EXAMPLES,
    OpenAIEndpoint,
    TransformersEndpoint,
    parse_endpoint,
    prepare_endpoint,
    validate_endpoint,
)
from domainrag.workspace import ResolvedLLM, Workspace
from domainrag.zoo import RecordKind, portable_base_id

_JOB_KIND = {"sft": "llm", "embedding": "embedding", "reranker": "reranker"}
MODEL_KINDS: tuple[str, ...] = get_args(RecordKind)


def _is_cross_encoder(path: Path) -> bool:
    """A sentence-transformers CrossEncoder save, a domainrag reranker, or a plain one-label classifier."""
    if (path / "domainrag_reranker.json").exists():
        return True
    st_config = path / "config_sentence_transformers.json"
    if st_config.exists():
        return json.loads(st_config.read_text()).get("model_type") == "CrossEncoder"
    if (path / "modules.json").exists() or not (path / "config.json").exists():
        return False
    config = json.loads((path / "config.json").read_text())  # pre-v4 CrossEncoder saves are plain HF folders
    architectures = config.get("architectures") or [""]
    return architectures[0].endswith("ForSequenceClassification") and len(config.get("id2label") or [0]) == 1


def _detect(path: Path) -> tuple[str, str, str | None]:
    """(kind, format, base model) of a model folder."""
    if (path / "adapter_config.json").exists():
        base = json.loads((path / "adapter_config.json").read_text()).get("base_model_name_or_path")
        return "llm", "lora-adapter", portable_base_id(base) if base else None
    if _is_cross_encoder(path):
        meta = path / "domainrag_reranker.json"
        base = json.loads(meta.read_text()).get("args", {}).get("base_model") if meta.exists() else None
        return "reranker", "cross-encoder", base
    if (path / "modules.json").exists() or (path / "config_sentence_transformers.json").exists():
        return "embedding", "sentence-transformers", None
    if (path / "config.json").exists():
        return "llm", "hf", None
    raise DomainRagError(
        f"{path} does not look like a model folder (no adapter_config.json, modules.json or config.json)",
        hint="point --path at a transformers, peft-adapter or sentence-transformers folder",
    )


def create_model(
    ws: Workspace,
    name: str,
    *,
    source: str = "job",
    job_id: str | None = None,
    path: Path | None = None,
    kind: str | None = None,
    base_model: str | None = None,
    new_version: bool = False,
    endpoint: dict[str, Any] | str | None = None,
) -> dict[str, Any]:
    previous = ws.model_record(name)
    record = _create(ws, name, source=source, job_id=job_id, path=path, kind=kind, base_model=base_model,
                     new_version=new_version, endpoint=endpoint)
    if previous and previous.get("endpoint") and "endpoint" not in record and record.get("key"):
        record = ws.catalog.update("model", name, endpoint=previous["endpoint"])  # a new version keeps its deployment
    return record


def _create(
    ws: Workspace,
    name: str,
    *,
    source: str,
    job_id: str | None,
    path: Path | None,
    kind: str | None,
    base_model: str | None,
    new_version: bool,
    endpoint: dict[str, Any] | str | None,
) -> dict[str, Any]:
    if kind not in (None, *MODEL_KINDS):
        raise DomainRagError(f"unknown model kind '{kind}'", hint=f"--kind is one of {', '.join(MODEL_KINDS)}")
    if source == "remote":
        return _create_remote(ws, name, endpoint, kind=kind, base_model=base_model, new_version=new_version)
    if endpoint is not None:
        raise DomainRagError("--endpoint goes with --source remote",
                             hint="deploy a registered model to an endpoint with `model deploy`")
    if source == "job":
        if not job_id:
            raise DomainRagError("--source job needs --job-id", hint="see `domainrag job list`")
        job = ws.catalog.require("job", job_id)
        if job["state"] != "succeeded":
            raise DomainRagError(f"job '{job_id}' is {job['state']}; only a succeeded job's artifact can be registered")
        spec = job["spec"]
        key = job["artifact_key"]
        fmt = job.get("artifact_format", "hf")
        extra = {"metrics": job.get("metrics", {})}
        if spec["algorithm"] == "embedding":
            extra["dimension"] = job.get("metrics", {}).get("dimension")
        info = {"type": "job", "job_id": job_id}
        if ws.lake.is_local:
            return ws.register_model(name, ws.lake.local_path(key), kind=_JOB_KIND[spec["algorithm"]], fmt=fmt,
                                     base_model=spec["base_model"], source=info, extra=extra, new_version=new_version)
        with tempfile.TemporaryDirectory() as tmp:
            local = ws.lake.download(key, Path(tmp) / "artifact")
            return ws.register_model(name, local, kind=_JOB_KIND[spec["algorithm"]], fmt=fmt,
                                     base_model=spec["base_model"], source=info, extra=extra, new_version=new_version)
    if source == "path":
        if path is None:
            raise DomainRagError("--source path needs --path")
        if not path.is_dir():
            raise DomainRagError(f"model folder {path} does not exist")
        detected_kind, fmt, detected_base = _detect(path)
        kind = kind or detected_kind
        extra: dict[str, Any] = {}
        if kind == "embedding":
            from domainrag.retrieval.embedder import Embedder

            extra["dimension"] = Embedder(str(path)).dimension
        return ws.register_model(name, path, kind=kind, fmt=fmt, base_model=base_model or detected_base,
                                 source={"type": "path", "path": str(path)}, extra=extra, new_version=new_version)
    raise DomainRagError(f"unknown --source '{source}'", hint="use job, path or remote")


def _create_remote(
    ws: Workspace, name: str, endpoint: dict[str, Any] | str | None, *, kind: str | None, base_model: str | None,
    new_version: bool,
) -> dict[str, Any]:
    """An LLM with no stored artifact, served by an OpenAI-compatible server or llama.cpp."""
    if endpoint is None:
        raise DomainRagError("--source remote needs --endpoint", hint=ENDPOINT_EXAMPLES)
    if kind not in (None, "llm"):
        raise DomainRagError(f"a remote model is an LLM, not {kind}")
    cfg = parse_endpoint(endpoint)
    if isinstance(cfg, TransformersEndpoint):
        raise DomainRagError("a remote model needs an openai or llamacpp endpoint (it has no local weights)",
                             hint=ENDPOINT_EXAMPLES)
    existing = ws.model_record(name)
    if existing and not new_version:
        raise DomainRagError(
            f"model '{name}' already exists (version {existing['version']})",
            hint="pass --new-version to register another version, or choose another name",
        )
    validate_endpoint(ws, ResolvedLLM(name), cfg)  # not registered yet: nothing to resolve
    prepare_endpoint(cfg)
    remote = isinstance(cfg, OpenAIEndpoint)
    record = {"version": int(existing["version"]) + 1 if existing else 1, "kind": "llm",
              "format": "remote" if remote else "gguf", "base_model": base_model, "key": None,
              "uri": cfg.base_url if remote else cfg.gguf, "source": {"type": "remote"}, "endpoint": cfg.model_dump()}
    return ws.catalog.put("model", name, record)
