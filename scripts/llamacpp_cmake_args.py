"""Print the CMAKE_ARGS for building llama-cpp-python on this machine (empty: llama.cpp's native build).

llama.cpp's default build is ``-march=native``, which turns on every instruction set CPUID reports.
Some virtual machines (Firecracker among them) report AMX but never let a process use AMX tile data:
the kernel's ``arch_prctl(ARCH_GET_XCOMP_SUPP)`` mask lacks XTILEDATA, and the first tile load dies
with SIGILL, taking the serving process (or the test run) with it. On such a machine this prints a
non-native build with the instruction sets that *are* usable listed explicitly and AMX off.

The Makefile also keys pip's wheel cache on this output, because pip caches a built wheel per source
archive, not per build flags: a wheel built with other flags would otherwise be reused.
Standard library only: it runs before the virtual environment exists.
"""

from __future__ import annotations

import ctypes
import platform
from pathlib import Path

# CPUID flag in /proc/cpuinfo -> llama.cpp's CMake option (ggml/CMakeLists.txt)
GGML_FLAGS = {
    "avx": "GGML_AVX", "avx2": "GGML_AVX2", "fma": "GGML_FMA", "f16c": "GGML_F16C", "bmi2": "GGML_BMI2",
    "avx_vnni": "GGML_AVX_VNNI", "avx512f": "GGML_AVX512", "avx512vbmi": "GGML_AVX512_VBMI",
    "avx512_vnni": "GGML_AVX512_VNNI", "avx512_bf16": "GGML_AVX512_BF16",
}
XFEATURE_XTILEDATA = 18
ARCH_GET_XCOMP_SUPP = 0x1022
SYS_ARCH_PRCTL = 158  # x86-64


def cpu_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def amx_usable() -> bool:
    """Whether the kernel lets processes use AMX tile data (XTILEDATA in the supported-features mask)."""
    mask = ctypes.c_ulong(0)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(SYS_ARCH_PRCTL, ARCH_GET_XCOMP_SUPP, ctypes.byref(mask)) != 0:
        return False
    return bool(mask.value >> XFEATURE_XTILEDATA & 1)


def cmake_args() -> str:
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        return ""
    flags = cpu_flags()
    if not any(f.startswith("amx") for f in flags) or amx_usable():
        return ""  # the native build runs here
    on = [f"-D{opt}=ON" for flag, opt in GGML_FLAGS.items() if flag in flags]
    return " ".join(["-DGGML_NATIVE=OFF", *on, "-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF", "-DGGML_AMX_BF16=OFF"])


if __name__ == "__main__":
    print(cmake_args())
