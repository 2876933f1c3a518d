"""How a job's worker process is started: plain ``python`` or ``accelerate launch``.

Scale-out is configuration, not code: all three training functions (SFT through TRL's SFTTrainer,
embedding and reranker through sentence-transformers' trainers) use the Hugging Face ``Trainer``,
which picks up data parallelism, mixed precision, DeepSpeed and FSDP from the environment that
``accelerate launch`` sets. A :class:`LaunchConfig` becomes that command plus a generated
accelerate config file (always written, so a user's default accelerate config never leaks in).

Several processes go through torchrun (accelerate's multi-GPU launcher) also on a machine without
GPUs: the Trainer then joins them in a gloo process group on the CPU (tests/training/test_data_parallel.py).
Multi-node: the same job is started once per machine with its ``machine_rank``; ``num_processes``
counts the processes of all machines together (accelerate's convention).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import socket
import sys
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from domainrag.errors import DomainRagError

MixedPrecision = Literal["no", "fp16", "bf16"]  # fp8 needs Transformer Engine / MS-AMP: not in the recipes
WORKER_MODULE = "domainrag.training.worker"


class LaunchConfig(BaseModel):
    """Processes, devices and sharding of one training job (defaults: one plain process)."""

    model_config = ConfigDict(extra="forbid")

    num_processes: int = Field(1, ge=1, le=1024, description="data-parallel worker processes on all machines "
                               "together (one per GPU)")
    num_machines: int = Field(1, ge=1, le=1024, description="machines (nodes) the processes are spread over")
    machine_rank: int = Field(0, ge=0, description="this machine's rank, 0 .. num_machines-1 (0 is the main one)")
    main_process_ip: str | None = Field(None, description="address of the rank-0 machine (needed for several)")
    main_process_port: int | None = Field(None, ge=1, le=65535, description="its rendezvous port (default 29500)")
    devices: str | None = Field(None, description='GPU ids to use, e.g. "0,1", or "all"')
    mixed_precision: MixedPrecision = "no"
    deepspeed_config: Path | None = Field(None, description="DeepSpeed JSON config file")
    fsdp_config: Path | None = Field(None, description="YAML/JSON file of accelerate fsdp_* settings")

    @field_validator("devices")
    @classmethod
    def _devices(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.replace(" ", "")
        if value != "all" and not all(part.isdigit() for part in value.split(",")):
            raise ValueError(f'devices must be "all" or comma-separated GPU ids like "0,1", got {value!r}')
        return value

    @model_validator(mode="after")
    def _consistent(self) -> LaunchConfig:
        if self.deepspeed_config is not None and self.fsdp_config is not None:
            raise ValueError("choose either deepspeed_config or fsdp_config, not both")
        per_machine = self.num_processes // self.num_machines
        if self.devices not in (None, "all") and len(self.devices.split(",")) < per_machine:
            raise ValueError(f"{per_machine} processes per machine need at least as many devices, got {self.devices!r}")
        if self.num_processes % self.num_machines:
            raise ValueError(f"num_processes ({self.num_processes}) must be a multiple of num_machines "
                             f"({self.num_machines}): the same number of processes runs on every machine")
        if self.machine_rank >= self.num_machines:
            raise ValueError(f"machine_rank must be below num_machines ({self.num_machines}), got {self.machine_rank}")
        if self.num_machines > 1 and not self.main_process_ip:
            raise ValueError("several machines need main_process_ip: the address of the machine with machine_rank 0")
        return self

    @property
    def plain(self) -> bool:
        """True when a single ``python`` process does the job (no accelerate launcher needed)."""
        return (
            self.num_processes == 1
            and self.devices is None
            and self.mixed_precision == "no"
            and self.deepspeed_config is None
            and self.fsdp_config is None
            and self.num_machines == 1
        )

    @property
    def distributed_type(self) -> str:
        """accelerate's ``distributed_type`` for this config."""
        if self.deepspeed_config is not None:
            return "DEEPSPEED"
        if self.fsdp_config is not None:
            return "FSDP"
        return "MULTI_GPU" if self.num_processes > 1 or self.num_machines > 1 else "NO"


def _fsdp_section(path: Path) -> dict[str, Any]:
    """The ``fsdp_config`` mapping from a user file (either the mapping itself or wrapped in ``fsdp_config``)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}  # JSON is YAML too
    if isinstance(data, dict) and isinstance(data.get("fsdp_config"), dict):
        data = data["fsdp_config"]
    if not isinstance(data, dict) or not all(str(k).startswith("fsdp_") for k in data):
        raise DomainRagError(
            f"{path} is not an accelerate FSDP config",
            hint="use a mapping of fsdp_* keys, e.g. {fsdp_version: 2, fsdp_auto_wrap_policy: TRANSFORMER_BASED_WRAP}",
        )
    return data


def _check_deepspeed_file(path: Path) -> None:
    """Refuse a DeepSpeed config that is not a JSON object (it would fail only inside the launched job)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        where = f" (line {exc.lineno}, column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise DomainRagError(f"{path} is not valid JSON{where}",
                             hint="see configs/deepspeed_zero2.json for a DeepSpeed config") from exc
    if not isinstance(data, dict):
        raise DomainRagError(f"{path} is not a DeepSpeed config: a JSON object is expected",
                             hint="see configs/deepspeed_zero2.json")


def module_installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def check_launch_dependencies(cfg: LaunchConfig) -> None:
    """Refuse a launch whose backend is not installed here, before the job is recorded and started."""
    if cfg.deepspeed_config is not None and not module_installed("deepspeed"):
        raise DomainRagError("deepspeed_config needs DeepSpeed, which is not installed",
                             hint="pip install deepspeed (on the GPU machines that run the job)")


def accelerate_config(cfg: LaunchConfig) -> dict[str, Any]:
    """The accelerate ``ClusterConfig`` mapping for ``cfg`` (what ``accelerate config`` would write)."""
    for path in (cfg.deepspeed_config, cfg.fsdp_config):
        if path is not None and not Path(path).expanduser().is_file():
            raise DomainRagError(f"launch config file {path} does not exist")
    if cfg.deepspeed_config is not None:
        _check_deepspeed_file(Path(cfg.deepspeed_config).expanduser())
    config: dict[str, Any] = {
        "compute_environment": "LOCAL_MACHINE",
        "distributed_type": cfg.distributed_type,
        "mixed_precision": cfg.mixed_precision,
        "num_processes": cfg.num_processes,
        "num_machines": cfg.num_machines,
        "machine_rank": cfg.machine_rank,
        "gpu_ids": cfg.devices or "all",
        "use_cpu": False,
        "debug": False,
        "rdzv_backend": "static",
        "same_network": True,
        "main_training_function": "main",
    }
    if cfg.num_machines > 1:
        config["main_process_ip"] = cfg.main_process_ip
        config["main_process_port"] = cfg.main_process_port or 29500
    if cfg.deepspeed_config is not None:
        ds_file = str(Path(cfg.deepspeed_config).expanduser().resolve())
        config["deepspeed_config"] = {"deepspeed_config_file": ds_file, "zero3_init_flag": False}
    if cfg.fsdp_config is not None:
        config["fsdp_config"] = _fsdp_section(Path(cfg.fsdp_config).expanduser())
    return config


def write_accelerate_config(cfg: LaunchConfig, path: Path) -> Path:
    """Write the accelerate config YAML for ``cfg`` to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(accelerate_config(cfg), sort_keys=True), encoding="utf-8")
    return path


def _accelerate_executable() -> str:
    """The ``accelerate`` script of this interpreter's environment (falls back to PATH)."""
    local = Path(sys.executable).with_name("accelerate")
    return str(local) if local.exists() else shutil.which("accelerate") or "accelerate"


def _free_port() -> int:
    """A TCP port that is free on this host now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def build_launch_command(
    job_id: str, workspace: str | Path, lake: str, cfg: LaunchConfig | None = None, *, resume: bool = False
) -> list[str]:
    """argv that starts the worker for ``job_id``.

    Writes ``<workspace>/launch/<job_id>.yaml`` when the worker runs under ``accelerate launch``.
    """
    cfg = cfg or LaunchConfig()
    worker_args = ["--workspace", str(workspace), "--lake", lake, "--job-id", job_id]
    if resume:
        worker_args.append("--resume")
    if cfg.plain:
        return [sys.executable, "-m", WORKER_MODULE, *worker_args]
    config_file = write_accelerate_config(cfg, Path(workspace) / "launch" / f"{job_id}.yaml")
    cmd = [
        _accelerate_executable(),
        "launch",
        "--config_file",
        str(config_file),
        "--num_processes",
        str(cfg.num_processes),
        "--num_machines",
        str(cfg.num_machines),
    ]
    if cfg.num_machines > 1:
        cmd += ["--machine_rank", str(cfg.machine_rank), "--main_process_ip", str(cfg.main_process_ip),
                "--main_process_port", str(cfg.main_process_port or 29500)]
    else:  # a free local port: two jobs on one machine must not both rendezvous on torch's default 29500
        cmd += ["--main_process_port", str(cfg.main_process_port or _free_port())]
    if cfg.devices is not None:
        cmd += ["--gpu_ids", cfg.devices]
    if cfg.mixed_precision != "no":
        cmd += ["--mixed_precision", cfg.mixed_precision]
    return [*cmd, "-m", WORKER_MODULE, *worker_args]
