"""Which GGUF file a llama.cpp endpoint runs: a path, a GGUF-packaged base model, or a re-encoded copy.

Looking a file up (:func:`check_gguf`) never writes anything: validating an endpoint uses it. Assembling
a split package and re-encoding (:func:`resolve_gguf`, :func:`convert_gguf`, :func:`llamacpp_gguf`) write
into the cache, once, under a file lock; they run when a model is deployed or loaded.
"""

from __future__ import annotations

import ctypes
import shutil
import tempfile
from pathlib import Path

from filelock import FileLock

from domainrag import hardware
from domainrag.errors import DomainRagError
from domainrag.serving.backends.config import GgufType, LlamaCppEndpoint
from domainrag.serving.backends.llamacpp import import_llama_cpp
from domainrag.serving.generator import BackendError
from domainrag.settings import cache_dir
from domainrag.zoo import BASE_MODELS, BaseModel, gguf_parts, gguf_source


def _gguf_cache_file(name: str) -> Path:
    """``<cache>/gguf/<name>`` (the folder created): where assembled and converted GGUF files live."""
    folder = cache_dir() / "gguf"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def _packaged_model(spec: str) -> BaseModel:
    """The GGUF-packaged base LLM named ``spec``, or a clear error."""
    model = BASE_MODELS.get(spec)
    if model is None or model.kind != "llm":
        gguf_models = ", ".join(n for n, m in BASE_MODELS.items() if m.kind == "llm")
        raise DomainRagError(f"gguf '{spec}' is neither a .gguf file nor a GGUF-packaged base model",
                             hint=f"pass a path to a .gguf file or one of: {gguf_models}")
    return model


GGUF_MAGIC = b"GGUF"


def check_gguf(spec: str) -> None:
    """Raise unless ``spec`` is a GGUF file (by its magic bytes) or an installed GGUF-packaged base model;
    writes nothing. A file that is no GGUF would otherwise be accepted at deploy and fail at the first request."""
    path = Path(spec).expanduser()
    if not path.is_file():
        gguf_parts(_packaged_model(spec))
        return
    with path.open("rb") as fh:
        magic = fh.read(len(GGUF_MAGIC))
    if magic != GGUF_MAGIC:
        raise DomainRagError(f"{path} is not a GGUF file (it does not start with {GGUF_MAGIC.decode()})",
                             hint="point gguf at a .gguf model file, e.g. one written by `domainrag model export "
                                  "--format gguf`, or at a packaged model's name")


def resolve_gguf(spec: str) -> str:
    """Path of a ``.gguf`` file, or of a GGUF-packaged base model (split packages assembled once into the cache)."""
    path = Path(spec).expanduser()
    if path.is_file():
        return str(path.resolve())
    model = _packaged_model(spec)
    target = _gguf_cache_file(f"{spec}.gguf")
    with FileLock(str(target) + ".lock"):
        if target.exists():
            return str(target)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            source = gguf_source(model, Path(tmp))
            if not source.is_relative_to(tmp):  # shipped as one file inside its package: use it in place
                return str(source)
            shutil.move(source, target)  # same folder: an atomic rename, never a half-written file
    return str(target)


_FTYPES = {"bf16": "LLAMA_FTYPE_MOSTLY_BF16", "q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0"}


def convert_gguf(gguf_path: str, tensor_type: GgufType) -> str:
    """``gguf_path`` re-encoded as ``tensor_type`` by llama.cpp's own quantizer, once, into the cache.

    Why: the Q4_1 file shipped for SmolLM2 has no fast CPU matrix kernels in llama.cpp; the same weights
    as BF16 or Q4_0 prefill prompts several times faster (measured in ``benchmarks/bench_serving.py``).
    The converted file is written to a temporary name and renamed, under a file lock, so concurrent
    servers never see half a file. Its name carries the source's size and modification time.
    """
    import_llama_cpp()  # a clear error before anything is written when the extra is missing
    source = Path(gguf_path)
    stat = source.stat()
    target = _gguf_cache_file(f"{source.stem}.{stat.st_size}-{int(stat.st_mtime)}.{tensor_type}.gguf")
    with FileLock(str(target) + ".lock"):
        if target.exists():
            return str(target)
        tmp = target.with_suffix(".partial")
        quantize_gguf(source, tmp, tensor_type)
        tmp.replace(target)
    return str(target)


def quantize_gguf(source: Path, target: Path, tensor_type: GgufType) -> None:
    """Write ``source`` re-encoded as ``tensor_type`` to ``target`` with llama.cpp's own quantizer (also used
    by ``model export --format gguf``); ``target`` is removed again when llama.cpp fails."""
    llama_cpp = import_llama_cpp()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, _FTYPES[tensor_type])
    params.allow_requantize = True
    params.nthread = hardware.usable_cpus()
    from llama_cpp._utils import suppress_stdout_stderr  # llama_cpp is an optional extra: imported on use

    with suppress_stdout_stderr(disable=False):  # llama.cpp prints a line per tensor
        rc = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), ctypes.byref(params))
    if rc != 0 or not target.exists():
        target.unlink(missing_ok=True)
        raise BackendError(f"llama.cpp could not convert {source} to {tensor_type} (code {rc})",
                           hint="check the file is a complete GGUF model, or drop the endpoint's convert option")


def llamacpp_gguf(cfg: LlamaCppEndpoint) -> str:
    """The GGUF file an endpoint runs: its file or packaged model, converted when ``convert`` asks."""
    path = resolve_gguf(cfg.gguf)
    return convert_gguf(path, cfg.convert) if cfg.convert else path


