"""Launch commands and accelerate configs for scaled-out jobs (checked by accelerate's own parsers, never run)."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.commands.launch import launch_command_parser
from pydantic import ValidationError

from domainrag.errors import DomainRagError
from domainrag.training import launch
from domainrag.training.jobs import create_job
from domainrag.training.launch import LaunchConfig, build_launch_command, write_accelerate_config
from domainrag.training.spec import RerankerJobSpec, parse_job_spec

WORKER = ["--workspace", "/ws", "--lake", "file:///lake", "--job-id", "j1"]


def _parse(cmd: list[str]) -> Any:
    """accelerate's own parser over everything after ``accelerate launch``."""
    assert Path(cmd[0]).name == "accelerate" and cmd[1] == "launch"
    return launch_command_parser().parse_args(cmd[2:])


def test_one_process_is_a_plain_python_worker(tmp_path: Path) -> None:
    cmd = build_launch_command("j1", "/ws", "file:///lake", LaunchConfig())
    assert cmd == [sys.executable, "-m", "domainrag.training.worker", *WORKER]
    assert build_launch_command("j1", tmp_path, "file:///lake", None, resume=True)[-1] == "--resume"
    assert not (tmp_path / "launch").exists()  # no accelerate config for a plain process


def test_multi_gpu_command_and_config(tmp_path: Path) -> None:
    cfg = LaunchConfig(num_processes=2, devices="0, 1", mixed_precision="bf16")
    cmd = build_launch_command("j1", tmp_path, "file:///lake", cfg, resume=True)
    args = _parse(cmd)
    assert args.num_processes == 2 and args.gpu_ids == "0,1" and args.mixed_precision == "bf16"
    assert args.module and args.training_script == "domainrag.training.worker"
    assert args.training_script_args == [
        "--workspace",
        str(tmp_path),
        "--lake",
        "file:///lake",
        "--job-id",
        "j1",
        "--resume",
    ]
    assert args.config_file == str(tmp_path / "launch" / "j1.yaml")
    loaded = load_config_from_file(args.config_file)  # accelerate's ClusterConfig: unknown keys would raise
    assert loaded.distributed_type.value == "MULTI_GPU"
    assert (loaded.num_processes, loaded.gpu_ids, loaded.mixed_precision) == (2, "0,1", "bf16")
    # one machine: a free port of its own, so two jobs at once do not both rendezvous on 29500
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", args.main_process_port))
    pinned = LaunchConfig(num_processes=2, main_process_port=4321)
    assert _parse(build_launch_command("j3", tmp_path, "file:///lake", pinned)).main_process_port == 4321


def test_single_gpu_or_mixed_precision_goes_through_accelerate(tmp_path: Path) -> None:
    args = _parse(build_launch_command("j1", tmp_path, "file:///lake", LaunchConfig(devices="1")))
    assert args.num_processes == 1 and args.gpu_ids == "1" and args.mixed_precision is None
    assert load_config_from_file(args.config_file).distributed_type.value == "NO"


def test_deepspeed_section(tmp_path: Path) -> None:
    ds = tmp_path / "ds_zero2.json"
    ds.write_text(json.dumps({"zero_optimization": {"stage": 2}, "train_micro_batch_size_per_gpu": "auto"}))
    cfg = LaunchConfig(num_processes=4, mixed_precision="bf16", deepspeed_config=ds)
    path = write_accelerate_config(cfg, tmp_path / "acc.yaml")
    loaded = load_config_from_file(str(path))
    assert loaded.distributed_type.value == "DEEPSPEED" and loaded.num_processes == 4
    assert loaded.deepspeed_config == {"deepspeed_config_file": str(ds.resolve()), "zero3_init_flag": False}
    assert loaded.fsdp_config == {}


def test_fsdp_section(tmp_path: Path) -> None:
    fsdp = {
        "fsdp_version": 2,
        "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
        "fsdp_cpu_ram_efficient_loading": True,
    }
    wrapped = tmp_path / "fsdp.yaml"
    wrapped.write_text(json.dumps({"fsdp_config": fsdp}))  # either the mapping or wrapped in fsdp_config
    cmd = build_launch_command("j2", tmp_path, "file:///lake", LaunchConfig(num_processes=2, fsdp_config=wrapped))
    loaded = load_config_from_file(_parse(cmd).config_file)
    assert loaded.distributed_type.value == "FSDP" and loaded.fsdp_config == fsdp

    bad = tmp_path / "bad.yaml"
    bad.write_text("sharding: full\n")
    with pytest.raises(DomainRagError, match="not an accelerate FSDP config"):
        write_accelerate_config(LaunchConfig(fsdp_config=bad), tmp_path / "x.yaml")
    with pytest.raises(DomainRagError, match="does not exist"):
        write_accelerate_config(LaunchConfig(deepspeed_config=tmp_path / "missing.json"), tmp_path / "x.yaml")


def test_invalid_launch_configs() -> None:
    with pytest.raises(ValidationError, match="not both"):
        LaunchConfig(deepspeed_config=Path("a.json"), fsdp_config=Path("b.yaml"))
    with pytest.raises(ValidationError, match="at least as many devices"):
        LaunchConfig(num_processes=2, devices="0")
    with pytest.raises(ValidationError, match="GPU ids"):
        LaunchConfig(devices="cuda:0")
    with pytest.raises(ValidationError):
        LaunchConfig(num_processes=0)
    with pytest.raises(ValidationError):
        LaunchConfig(mixed_precision="fp64")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        LaunchConfig(mixed_precision="fp8")  # type: ignore[arg-type]  # accelerate fails on it without GPUs/TE


def test_job_spec_carries_the_launch_config_to_start_job(ws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "pairs.jsonl"
    data.write_text('{"query": "q1", "positive": "p1"}\n{"query": "q2", "positive": "p2"}\n')
    ds = tmp_path / "ds.json"
    ds.write_text("{}")
    launched: list[list[str]] = []

    class _Proc:
        pid = 424242

    def fake_popen(cmd: list[str], **_: Any) -> _Proc:  # the command is checked, not run: no GPUs here
        launched.append(cmd)
        return _Proc()

    monkeypatch.setattr("domainrag.training.jobs.subprocess.Popen", fake_popen)
    monkeypatch.setattr(launch, "module_installed", lambda name: True)  # DeepSpeed lives on the GPU machines
    spec = RerankerJobSpec(
        name="big",
        base_model="all-minilm-l6-v2",
        dataset=str(data),
        launch=LaunchConfig(num_processes=2, mixed_precision="fp16", deepspeed_config=ds),
    )
    record = create_job(ws, spec)
    stored = ws.catalog.require("job", record.name)
    assert record.pid == 424242 and stored["spec"]["launch"]["deepspeed_config"] == str(ds)
    assert parse_job_spec(stored["spec"]) == spec == record.spec  # JSON in the catalogue round-trips
    args = _parse(launched[0])
    assert args.num_processes == 2 and args.mixed_precision == "fp16"
    assert args.training_script_args[-2:] == ["--job-id", record.name]
    assert load_config_from_file(args.config_file).distributed_type.value == "DEEPSPEED"

    with pytest.raises(DomainRagError, match="does not exist"):  # refused before anything is recorded
        create_job(ws, spec.model_copy(update={"launch": LaunchConfig(deepspeed_config=tmp_path / "nope.json")}))
    broken = tmp_path / "broken.json"
    broken.write_text('{"zero_optimization": {"stage": 2')
    with pytest.raises(DomainRagError, match=r"broken\.json is not valid JSON \(line 1"):
        create_job(ws, spec.model_copy(update={"launch": LaunchConfig(deepspeed_config=broken)}))
    monkeypatch.setattr(launch, "module_installed", lambda name: False)
    with pytest.raises(DomainRagError, match="needs DeepSpeed, which is not installed"):
        create_job(ws, spec)
    assert len(ws.catalog.list("job")) == 1


def test_multi_node_command_and_config(tmp_path: Path) -> None:
    cfg = LaunchConfig(num_processes=16, num_machines=2, machine_rank=1, main_process_ip="10.0.0.1")
    args = _parse(build_launch_command("j1", tmp_path, "file:///lake", cfg))
    assert (args.num_processes, args.num_machines, args.machine_rank) == (16, 2, 1)
    assert (args.main_process_ip, args.main_process_port) == ("10.0.0.1", 29500)
    loaded = load_config_from_file(args.config_file)
    assert loaded.distributed_type.value == "MULTI_GPU"
    assert (loaded.num_machines, loaded.machine_rank, loaded.main_process_ip, loaded.main_process_port) == (
        2, 1, "10.0.0.1", 29500)
    one_per_node = LaunchConfig(num_processes=2, num_machines=2, main_process_ip="h0", main_process_port=1234)
    assert not one_per_node.plain and one_per_node.distributed_type == "MULTI_GPU"
    assert _parse(build_launch_command("j2", tmp_path, "file:///lake", one_per_node)).main_process_port == 1234
    with pytest.raises(ValidationError, match="main_process_ip"):
        LaunchConfig(num_processes=2, num_machines=2)
    with pytest.raises(ValidationError, match="machine_rank must be below"):
        LaunchConfig(num_processes=2, num_machines=2, machine_rank=2, main_process_ip="h0")
    with pytest.raises(ValidationError, match="multiple of num_machines"):
        LaunchConfig(num_processes=3, num_machines=2, main_process_ip="h0")


@pytest.mark.parametrize("name", ["deepspeed_zero2.json", "deepspeed_zero3.json", "fsdp.yaml"])
def test_shipped_recipes_become_valid_accelerate_configs(name: str, tmp_path: Path) -> None:
    recipe = Path(__file__).resolve().parents[2] / "configs" / "accelerate" / name
    if name.endswith(".json"):
        ds = json.loads(recipe.read_text())
        assert ds["zero_optimization"]["stage"] == int(name[-6]) and ds["train_micro_batch_size_per_gpu"] == "auto"
        cfg = LaunchConfig(num_processes=8, mixed_precision="bf16", deepspeed_config=recipe)
    else:
        cfg = LaunchConfig(num_processes=8, mixed_precision="bf16", fsdp_config=recipe)
    loaded = load_config_from_file(str(write_accelerate_config(cfg, tmp_path / "acc.yaml")))
    assert loaded.distributed_type.value == ("DEEPSPEED" if name.endswith(".json") else "FSDP")
    if name == "fsdp.yaml":
        assert loaded.fsdp_config["fsdp_version"] == 2
        assert loaded.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"
