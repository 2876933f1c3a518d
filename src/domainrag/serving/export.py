"""``model export``: an LLM (base model, or base + LoRA adapter merged) written for other serving engines.

``hf``: a Hugging Face folder (safetensors, config.json, generation_config.json, tokenizer files, README.md
model card) that plain transformers and vLLM load. ``gguf``: one GGUF file (plus the card) that llama.cpp
runs, at f16 or f32, or re-encoded by llama.cpp's quantizer (bf16, q8_0, q4_0). Nothing in the output names
a folder of this machine; the output is written to a staging folder and moved into place when complete.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, get_args

import torch
import yaml

from domainrag.errors import DomainRagError
from domainrag.serving.backends.config import GgufType
from domainrag.serving.backends.gguf import quantize_gguf, resolve_gguf
from domainrag.serving.export_gguf import FILE_TYPES, write_gguf
from domainrag.workspace import ResolvedLLM, Workspace
from domainrag.zoo import BASE_MODELS

ExportFormat = Literal["hf", "gguf"]
FORMATS: tuple[str, ...] = get_args(ExportFormat)
QUANTIZATIONS: tuple[str, ...] = (*FILE_TYPES, *get_args(GgufType))
HF_DTYPES = ("float32", "bfloat16", "float16")
Progress = Callable[[str], None]


class ExportError(DomainRagError):
    """An export that cannot be done as asked (format, quantization, output place)."""


def check_options(fmt: str, quantization: str, dtype: str) -> None:
    """Raise :class:`ExportError` for an unknown format, GGUF quantization or HF dtype."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format '{fmt}'", hint=f"use one of: {', '.join(FORMATS)}")
    if fmt == "gguf" and quantization not in QUANTIZATIONS:
        raise ExportError(f"unknown GGUF quantization '{quantization}'", hint=f"use one of: {', '.join(QUANTIZATIONS)}")
    if dtype not in HF_DTYPES:
        raise ExportError(f"unknown dtype '{dtype}'", hint=f"use one of: {', '.join(HF_DTYPES)}")


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} is a file, not a folder", hint="name a new or empty folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ExportError(f"output folder {out} is not empty",
                          hint="pass --force to replace it, or name another folder")
    # The export is staged beside out: its parent must be a folder this process can create and write, checked
    # now rather than after the model has loaded.
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ExportError(f"--out {out}: {parent} is a file, not a folder", hint="name a folder path for --out")
    try:
        with tempfile.TemporaryDirectory(dir=parent, prefix=".export-check-"):
            pass
    except OSError as exc:
        raise ExportError(f"--out {out}: cannot write in {parent} ({exc.strerror or exc})",
                          hint="name a folder you can write to") from exc


def _base_name(llm: ResolvedLLM) -> str | None:
    """The zoo (or hub) name of the model's base: the record's base model, or the name itself."""
    if llm.record is None:
        return llm.name if llm.name in BASE_MODELS or not Path(llm.name).exists() else None
    return llm.record.get("base_model")


def merged_model(ws: Workspace, llm: ResolvedLLM) -> tuple[Any, Any]:
    """(model, tokenizer) of an LLM in float32, its LoRA adapter (if any) merged into the weights."""
    from peft import PeftModel  # transformers/peft are imported when a model is loaded (CLI start-up)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not llm.has_weights:
        raise ExportError(f"model '{llm.name}' has no stored weights (it is served by a remote endpoint)",
                          hint="export a model registered from a job or a folder")
    base, adapter = ws.llm_path(llm)
    tokenizer = AutoTokenizer.from_pretrained(adapter or base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    if adapter:
        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    model.eval()
    return model, tokenizer


def model_card(name: str, llm: ResolvedLLM, fmt: str, detail: str) -> str:
    """README.md with Hugging Face YAML front matter, naming the base model by its portable id."""
    base = _base_name(llm)
    zoo = BASE_MODELS.get(base or "")
    meta: dict[str, Any] = {}
    if (zoo and zoo.hub_id) or (base and not zoo):
        meta["base_model"] = zoo.hub_id if zoo else base
    meta["library_name"] = "transformers" if fmt == "hf" else "gguf"
    meta["pipeline_tag"] = "text-generation"
    fmt_tags = ["merged-lora"] if llm.record and llm.record.get("format") == "lora-adapter" else []
    meta["tags"] = ["domainrag", fmt, *fmt_tags, *([f"domainrag-zoo:{base}"] if zoo else [])]
    if zoo and zoo.license:
        meta["license"] = zoo.license
    version = f" v{llm.record['version']}" if llm.record else ""
    lines = ["---", yaml.safe_dump(meta, sort_keys=False).rstrip(), "---", "",
             f"# {name}", "", f"Exported by domainrag from model `{llm.name}`{version} "
             f"(base model `{base or 'local folder'}`) as {detail}.", ""]
    return "\n".join(lines)


def _save_hf(model: Any, tokenizer: Any, folder: Path, dtype: str) -> None:
    model.to(getattr(torch, dtype)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    config.pop("_name_or_path", None)  # the folder it was loaded from on this machine
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    tok_config = folder / "tokenizer_config.json"
    if tok_config.exists():
        data = json.loads(tok_config.read_text())
        if data.pop("name_or_path", None) is not None:
            tok_config.write_text(json.dumps(data, indent=2) + "\n")


def _save_gguf(ws: Workspace, llm: ResolvedLLM, model: Any, tokenizer: Any, folder: Path, quantization: str,
               progress: Progress) -> Path:
    base = _base_name(llm)
    if base not in BASE_MODELS:
        raise ExportError(f"GGUF export needs a base model of the zoo (its GGUF supplies the tokenizer metadata); "
                          f"'{llm.name}' has base model {base or 'unknown'}",
                          hint="export with --format hf and convert it with llama.cpp's convert_hf_to_gguf.py")
    base_gguf = resolve_gguf(base)
    stem = Path(llm.name).name
    plain = "f16" if quantization not in FILE_TYPES else quantization
    target = folder / f"{stem}.{quantization}.gguf"
    progress(f"writing GGUF ({plain})")
    written = target if plain == quantization else folder / f"{stem}.{plain}.partial.gguf"
    write_gguf(model.state_dict(), len(tokenizer), base_gguf, written, plain)
    if written != target:
        progress(f"re-encoding GGUF as {quantization} with llama.cpp")
        quantize_gguf(written, target, quantization)  # type: ignore[arg-type]
        written.unlink()
    return target


def export_model(
    ws: Workspace,
    name: str,
    fmt: str,
    *,
    out: Path | None = None,
    lake_key: str | None = None,
    quantization: str = "f16",
    dtype: str = "float32",
    force: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Export LLM ``name`` as ``fmt`` into folder ``out`` or under lake key ``lake_key``; returns what was written.

    The export is built in a staging folder next to ``out`` and moved into place when complete: an
    interrupted export never leaves a folder that looks whole, and ``--force`` replaces the old one only then.
    """
    say = progress or (lambda _msg: None)
    check_options(fmt, quantization, dtype)
    if (out is None) == (lake_key is None):
        raise ExportError("name exactly one of --out (a folder) or --lake-key (a lake key)")
    if out is not None:
        out = out.expanduser()
        _check_out(out, force)
    elif ws.lake.list(lake_key.rstrip("/") + "/") and not force:  # type: ignore[union-attr]
        raise ExportError(f"lake key {lake_key} already holds files",
                          hint="pass --force to replace them, or name another key")
    llm = ws.resolve_llm(name)
    ws.verify_llm(llm)
    say(f"loading {name} and merging its adapter" if llm.record and llm.record.get("format") == "lora-adapter"
        else f"loading {name}")
    model, tokenizer = merged_model(ws, llm)
    parent = out.parent if out is not None else None
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=parent, prefix=".export-") as tmp:
        staging = Path(tmp) / "staging"
        staging.mkdir()
        if fmt == "hf":
            say(f"saving Hugging Face folder ({dtype})")
            _save_hf(model, tokenizer, staging, dtype)
            detail = f"a Hugging Face folder ({dtype} safetensors)"
            files = ["model.safetensors"]
        else:
            gguf_file = _save_gguf(ws, llm, model, tokenizer, staging, quantization, say)
            detail = f"a GGUF file ({quantization})"
            files = [gguf_file.name]
        (staging / "README.md").write_text(model_card(name, llm, fmt, detail), encoding="utf-8")
        if out is not None:
            if out.exists():
                shutil.rmtree(out)
            staging.rename(out)
            where = str(out)
        else:
            say(f"uploading to the lake under {lake_key}")
            if force:
                ws.lake.delete(lake_key)  # type: ignore[arg-type]
            ws.lake.upload(staging, lake_key)  # type: ignore[arg-type]
            where = ws.lake.url(lake_key)  # type: ignore[arg-type]
    return {"model": name, "format": fmt, "quantization": quantization if fmt == "gguf" else None,
            "dtype": dtype if fmt == "hf" else None, "location": where, "files": files}
