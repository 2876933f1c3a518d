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


def test_cgroup_v2_quota_is_read_and_unlimited_is_none(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert hardware._cgroup_cpu_quota(str(tmp_path)) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert hardware._cgroup_cpu_quota(str(tmp_path)) is None
    (tmp_path / "cpu.max").write_text("150000 0\n")  # a broken period: unlimited, not a ZeroDivisionError
    assert hardware._cgroup_cpu_quota(str(tmp_path)) is None


def test_cgroup_v1_quota_is_read_when_v2_is_absent(tmp_path):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("200000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert hardware._cgroup_cpu_quota(str(tmp_path)) == 2.0
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert hardware._cgroup_cpu_quota(str(tmp_path)) is None
    assert hardware._cgroup_cpu_quota(str(tmp_path / "missing")) is None


def test_usable_cpus_follows_affinity_and_quota(monkeypatch):
    monkeypatch.setattr(hardware.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5, 6, 7}, raising=False)
    monkeypatch.setattr(hardware, "_cgroup_cpu_quota", lambda: None)
    assert hardware.usable_cpus() == 8
    monkeypatch.setattr(hardware, "_cgroup_cpu_quota", lambda: 1.5)
    assert hardware.usable_cpus() == 2
    monkeypatch.setattr(hardware, "_cgroup_cpu_quota", lambda: 0.2)
    assert hardware.usable_cpus() == 1
    monkeypatch.setattr(hardware.os, "sched_getaffinity", lambda pid: {3}, raising=False)
    monkeypatch.setattr(hardware, "_cgroup_cpu_quota", lambda: 4.0)
    assert hardware.usable_cpus() == 1
