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


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask, lowered by a cgroup CPU quota (a container's
    ``--cpus``), never below 1. ``os.cpu_count()`` counts the host's CPUs and ignores both, so worker and
    thread counts sized by it oversubscribe a container."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        count = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    if quota is not None:
        count = min(count, max(1, int(quota + 0.5)))  # a quota of 1.5 CPUs keeps 2 threads busy enough
    return max(1, count)


def _cgroup_cpu_quota(root: str = "/sys/fs/cgroup") -> float | None:
    """CPUs allowed by the cgroup (v2 ``cpu.max``, else v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``); None
    when unlimited or unreadable. Reads the cgroup mounted at ``root``, which is the process's own inside a
    container; a limit set on a parent slice of a host process (systemd ``CPUQuota=``) is not seen."""
    try:
        with open(f"{root}/cpu.max", encoding="ascii") as fh:
            quota, period = fh.read().split()[:2]
        return None if quota == "max" or int(period) <= 0 else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        with open(f"{root}/cpu/cpu.cfs_quota_us", encoding="ascii") as fh:
            quota_us = int(fh.read())
        with open(f"{root}/cpu/cpu.cfs_period_us", encoding="ascii") as fh:
            period_us = int(fh.read())
    except (OSError, ValueError):
        return None
    return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us
