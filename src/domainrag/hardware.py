"""What the host processor can do, where it changes which code path is fastest."""

from __future__ import annotations

import functools


@functools.cache
def native_bf16() -> bool:
    """Whether the host CPU multiplies bfloat16 natively (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slower."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            flags = next((line for line in fh if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
