"""What the host processor can do, where it changes which code path is fastest."""

from __future__ import annotations

import functools
import os

from domainrag.errors import DomainRagError

NATIVE_BF16_ENV = "DOMAINRAG_NATIVE_BF16"


@functools.cache
def native_bf16() -> bool:
    """Whether the host CPU multiplies bfloat16 natively (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slower.

    ``DOMAINRAG_NATIVE_BF16=0`` takes the float32 paths on any CPU (a virtual machine whose CPU flags
    promise more than it runs fast, or to reproduce what an AVX2-only machine does); ``1`` takes the bf16 paths.
    """
    forced = os.environ.get(NATIVE_BF16_ENV, "").strip().lower()
    if forced in ("0", "false", "no"):
        return False
    if forced in ("1", "true", "yes"):
        return True
    if forced:
        raise DomainRagError(f"{NATIVE_BF16_ENV} must be 0 or 1, not {forced!r}",
                             hint="unset it to detect the CPU's bf16 support from its flags")
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            flags = next((line for line in fh if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
