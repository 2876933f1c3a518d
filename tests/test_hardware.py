"""CPU capability detection and its override."""

from __future__ import annotations

import pytest

from domainrag import hardware
from domainrag.errors import DomainRagError


@pytest.fixture(autouse=True)
def _fresh() -> None:
    hardware.native_bf16.cache_clear()
    yield
    hardware.native_bf16.cache_clear()


def test_native_bf16_follows_the_cpu_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOMAINRAG_NATIVE_BF16", raising=False)
    with open("/proc/cpuinfo", encoding="utf-8") as fh:
        flags = next((line for line in fh if line.startswith("flags")), "").split()
    assert hardware.native_bf16() == ("avx512_bf16" in flags or "amx_bf16" in flags)


@pytest.mark.parametrize(("value", "expected"), [("0", False), ("no", False), ("1", True), ("TRUE", True)])
def test_the_environment_forces_either_path(monkeypatch: pytest.MonkeyPatch, value: str, expected: bool) -> None:
    monkeypatch.setenv("DOMAINRAG_NATIVE_BF16", value)
    assert hardware.native_bf16() is expected


def test_a_bad_value_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOMAINRAG_NATIVE_BF16", "maybe")
    with pytest.raises(DomainRagError, match="DOMAINRAG_NATIVE_BF16 must be 0 or 1"):
        hardware.native_bf16()
