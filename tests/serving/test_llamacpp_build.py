"""The llama.cpp build flags: AMX off where the CPU reports it but the kernel does not grant it."""

from __future__ import annotations

import platform
from typing import Any

import pytest


@pytest.fixture
def build(load_script: Any) -> Any:
    return load_script("scripts/llamacpp_cmake_args.py")


@pytest.fixture
def x86_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(platform, "system", lambda: "Linux")
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")


def test_reported_but_forbidden_amx_gives_an_explicit_build_without_it(
    build: Any, x86_linux: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(build, "cpu_flags", lambda: {"avx", "avx2", "fma", "avx512f", "amx_tile", "amx_int8"})
    monkeypatch.setattr(build, "amx_usable", lambda: False)
    args = build.cmake_args().split()
    assert args[0] == "-DGGML_NATIVE=OFF"
    assert {"-DGGML_AVX=ON", "-DGGML_AVX2=ON", "-DGGML_FMA=ON", "-DGGML_AVX512=ON"} <= set(args)
    assert "-DGGML_AVX512_BF16=ON" not in args  # only what the CPU has
    assert {"-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF", "-DGGML_AMX_BF16=OFF"} <= set(args)


@pytest.mark.parametrize(("flags", "usable"), [({"avx2", "amx_tile"}, True), ({"avx2", "avx512f"}, False)])
def test_usable_or_absent_amx_keeps_the_native_build(
    build: Any, x86_linux: None, monkeypatch: pytest.MonkeyPatch, flags: set[str], usable: bool
) -> None:
    monkeypatch.setattr(build, "cpu_flags", lambda: flags)
    monkeypatch.setattr(build, "amx_usable", lambda: usable)
    assert build.cmake_args() == ""

