"""Training precision: ``auto`` picks bf16 autocast where the hardware multiplies bf16 natively."""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from domainrag.hardware import native_bf16


def resolve_precision(precision: str) -> str:
    """``fp32`` or ``bf16`` for a job's ``precision`` option.

    ``auto`` trains in bf16 autocast (fp32 master weights, as the HF Trainer's ``bf16=True`` does) where
    the hardware multiplies bf16 natively: a CUDA GPU that supports it, or a CPU with AVX512-BF16/AMX
    (oneDNN then runs the matrix products several times faster than in fp32). Elsewhere bf16 would be
    emulated and slower, so ``auto`` stays fp32.
    """
    if precision != "auto":
        return precision
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if native_bf16() else "fp32"


def autocast(precision: str, device_type: str) -> Any:
    """``torch.autocast`` to bf16 when ``precision`` resolves to bf16, else a no-op context."""
    if resolve_precision(precision) == "bf16":
        return torch.autocast(device_type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
