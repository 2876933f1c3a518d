"""A merged Hugging Face checkpoint written as a GGUF file that llama.cpp runs.

Why by hand: llama.cpp's ``convert_hf_to_gguf.py`` ships in no installed package (the ``gguf`` library has
the writer, the tensor-name maps and the metadata reader, not the converter). What the converter adds on
top of those is the tokenizer and hyper-parameter metadata, and the q/k row order llama.cpp expects for
Llama. Every base LLM of the zoo is itself a GGUF made by that converter, so its metadata (tokenizer,
chat template, rope, head counts) is copied as it is, and only the tensors are replaced by the merged
weights: the tensor set, shapes and names must match the base GGUF exactly, or nothing is written.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import gguf
import numpy as np
import torch

from domainrag.errors import DomainRagError

# Architectures whose tensors map one to one (the Llama ones with llama.cpp's rotary row order for q and k).
_SUPPORTED = {"llama": gguf.MODEL_ARCH.LLAMA, "qwen2": gguf.MODEL_ARCH.QWEN2}
_PERMUTED = {"llama"}
# Key-value fields the writer sets itself, or that describe the base file's encoding, not the model.
_SKIPPED_FIELDS = ("GGUF.", "general.file_type", "general.quantization_version")
FILE_TYPES = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16}


def _permute(weights: np.ndarray, n_head: int) -> np.ndarray:
    """HF's rotary half-split row order → llama.cpp's interleaved one (as ``convert_hf_to_gguf.py`` does)."""
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def _field(reader: gguf.GGUFReader, name: str) -> object:
    field = reader.get_field(name)
    return field.contents() if field is not None else None


def _gguf_tensors(state: Mapping[str, torch.Tensor], reader: gguf.GGUFReader, arch: str) -> dict[str, np.ndarray]:
    """The merged weights under their GGUF names, in float32, q/k permuted where llama.cpp wants it."""
    n_blocks = int(_field(reader, f"{arch}.block_count"))
    n_head = int(_field(reader, f"{arch}.attention.head_count"))
    n_kv = int(_field(reader, f"{arch}.attention.head_count_kv") or n_head)
    names = gguf.get_tensor_name_map(_SUPPORTED[arch], n_blocks)
    out: dict[str, np.ndarray] = {}
    for key, tensor in state.items():
        name = names.get_name(key, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise DomainRagError(f"tensor {key} of the merged model has no GGUF name for {arch}",
                                 hint="export with --format hf and convert it with llama.cpp's convert_hf_to_gguf.py")
        data = tensor.detach().to(torch.float32).cpu().numpy()
        if arch in _PERMUTED and name.endswith("attn_q.weight"):
            data = _permute(data, n_head)
        elif arch in _PERMUTED and name.endswith("attn_k.weight"):
            data = _permute(data, n_kv)
        out[name] = data
    return out


def write_gguf(state: Mapping[str, torch.Tensor], vocab_size: int, base_gguf: str, target: Path,
               file_type: str = "f16") -> None:
    """Write ``state`` (a merged model's state dict) to ``target`` with the metadata of ``base_gguf``.

    Matrices are stored as ``file_type`` (f16 or f32), norms and biases as f32 (what llama.cpp's converter
    does). Raises, writing nothing, when the architecture, vocabulary, tensor names or shapes differ from the
    base GGUF's.
    """
    reader = gguf.GGUFReader(base_gguf)
    arch = str(_field(reader, "general.architecture"))
    if arch not in _SUPPORTED:
        raise DomainRagError(f"GGUF export supports the {', '.join(_SUPPORTED)} architectures, not {arch}",
                             hint="export with --format hf and convert it with llama.cpp's convert_hf_to_gguf.py")
    tokens = reader.get_field("tokenizer.ggml.tokens")
    if tokens is not None and len(tokens.data) != vocab_size:
        raise DomainRagError(f"the model's tokenizer has {vocab_size} tokens, its base GGUF {len(tokens.data)}",
                             hint="a model with added tokens needs --format hf and llama.cpp's own converter")
    tensors = _gguf_tensors(state, reader, arch)
    wanted = {t.name: tuple(int(d) for d in reversed(t.shape)) for t in reader.tensors}  # GGUF lists ne0 first
    missing = sorted(set(wanted) - set(tensors))
    if missing:
        raise DomainRagError(f"the merged model has no tensor for {', '.join(missing[:3])} of the base GGUF",
                             hint="the model's architecture differs from its base model's GGUF")
    writer = gguf.GGUFWriter(str(target), arch)
    for field in reader.fields.values():
        if field.name.startswith(_SKIPPED_FIELDS) or field.name == gguf.Keys.General.ARCHITECTURE:
            continue
        sub_type = field.types[-1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), field.types[0], sub_type=sub_type)
    writer.add_file_type(FILE_TYPES[file_type])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    for name in wanted:  # the base file's order, and nothing it lacks (a tied lm_head is not stored twice)
        data = tensors[name]
        if data.shape != wanted[name]:
            raise DomainRagError(f"tensor {name} is {data.shape} in the merged model, {wanted[name]} in its base GGUF")
        if file_type == "f16" and data.ndim > 1:
            writer.add_tensor(name, data.astype(np.float16), raw_dtype=gguf.GGMLQuantizationType.F16)
        else:
            writer.add_tensor(name, data, raw_dtype=gguf.GGMLQuantizationType.F32)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file(progress=False)
    writer.close()
