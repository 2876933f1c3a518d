"""What every benchmark result records about where it ran: CPU model and flags (lscpu), package versions."""

from __future__ import annotations

import importlib.metadata as md
import subprocess


def lscpu() -> dict[str, str]:
    """Model name, CPU count, threads per core and flags (AVX2 / AVX512-BF16 / AMX decide the fast paths)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    keep = ("Model name", "CPU(s)", "Thread(s) per core", "Flags")
    return {k: fields[k].strip() for k in keep if k in fields}


def version(name: str) -> str | None:
    """Installed version of a distribution, or None."""
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None
