"""Fault injection against the real S3 server through a real Toxiproxy (see ``conftest.py``).

Each lake operation, under each fault, must end within its deadline with a :class:`StorageError`
(or a failed preflight check) naming the endpoint, never hang or leak a traceback; after the fault
is healed, re-running the operation must leave exactly the data of an undisturbed run.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from domainrag.errors import StorageError
from domainrag.storage.lake import Lake
from domainrag.storage.preflight import Failure, check_read, check_write

pytestmark = pytest.mark.integration

# A hang is what these tests catch: with the 4 s deadline of the fixtures, an operation of a few
# lake calls ends well inside this bound, a hung one never does.
BOUND_S = 45.0


def _tree(folder: Path) -> Path:
    """A model-like folder: small config files and one 200 KiB weight file (several network writes)."""
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text('{"r": 8}')
    (folder / "weights.bin").write_bytes(hashlib.sha256(b"seed").digest() * (200 * 1024 // 32))
    (folder / "sub" / "notes.txt").write_text("notes")
    return folder


OPERATIONS: dict[str, Callable[[Lake, Path], Any]] = {
    "write": lambda lake, tmp: lake.write_text("raw/new.txt", "hello"),
    "upload": lambda lake, tmp: lake.upload(_tree(tmp / "up"), "models/m/1"),
    "list": lambda lake, tmp: lake.list("raw"),
    "read": lambda lake, tmp: lake.read_text("raw/seed.txt"),
    "exists": lambda lake, tmp: lake.exists("raw/seed.txt"),
}


def _snapshot(lake: Lake, prefix: str) -> dict[str, str]:
    """Relative key -> sha256 of every visible object under ``prefix``."""
    return {k[len(prefix):]: hashlib.sha256(lake.read_bytes(k)).hexdigest() for k in lake.list(prefix)}


@pytest.mark.parametrize("fault", ["stall", "reset", "dead"])
@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_every_lake_operation_ends_with_a_clear_error_under_each_fault(
    faulty_s3, toxiproxy, tmp_path: Path, fault: str, operation: str
) -> None:
    lake = Lake(f"{faulty_s3.prefix}/lake")
    lake.write_text("raw/seed.txt", "seed")  # through the healthy proxy
    if fault == "dead":
        toxiproxy.enable(faulty_s3.proxy, False)
    else:
        toxiproxy.toxic(faulty_s3.proxy, fault)
    started = time.monotonic()
    with pytest.raises(StorageError) as err:
        OPERATIONS[operation](lake, tmp_path)
    assert time.monotonic() - started < BOUND_S
    assert faulty_s3.url in str(err.value) and err.value.hint  # names the endpoint, says what to do


@pytest.mark.parametrize("fault", ["stall", "reset", "dead"])
def test_preflight_reports_an_unreachable_endpoint_in_bounded_time(faulty_s3, toxiproxy, fault: str) -> None:
    """What ``doctor``, ``ingest`` and ``job create`` run first: a failed check, not a hang."""
    Lake(f"{faulty_s3.prefix}/lake").write_text("raw/seed.txt", "seed")
    if fault == "dead":
        toxiproxy.enable(faulty_s3.proxy, False)
    else:
        toxiproxy.toxic(faulty_s3.proxy, fault)
    started = time.monotonic()
    results = [check_write(f"{faulty_s3.prefix}/lake"), check_read(f"{faulty_s3.prefix}/lake/raw/seed.txt")]
    assert time.monotonic() - started < BOUND_S
    for r in results:
        assert not r.ok and r.cause == Failure.ENDPOINT_UNREACHABLE and faulty_s3.url in (r.hint or ""), r


def test_latency_slows_but_does_not_fail(faulty_s3, toxiproxy, tmp_path: Path) -> None:
    lake = Lake(f"{faulty_s3.prefix}/lake")
    lake.write_text("raw/seed.txt", "seed")
    toxiproxy.latency(faulty_s3.proxy, 300)
    for name, op in OPERATIONS.items():
        op(lake, tmp_path / name)
    assert lake.read_text("raw/new.txt") == "hello"
    assert sorted(lake.list("models/m/1")) == [f"models/m/1/{k}" for k in ("config.json", "sub/notes.txt",
                                                                         "weights.bin")]


@pytest.mark.parametrize("fault", ["stall", "reset", "cut", "dead"])
def test_upload_rerun_after_a_fault_equals_an_undisturbed_upload(
    faulty_s3, toxiproxy, tmp_path: Path, fault: str
) -> None:
    """A fault mid-upload loses nothing and leaves nothing half-written: the re-run's objects equal
    (keys, count, bytes) those of an upload that never saw a fault."""
    src = _tree(tmp_path / "model")
    clean = Lake(f"{faulty_s3.prefix}/clean")
    clean.upload(src, "models/m/1")
    expected = _snapshot(clean, "models/m/1")

    lake = Lake(f"{faulty_s3.prefix}/lake")
    if fault == "dead":
        toxiproxy.enable(faulty_s3.proxy, False)
    else:
        toxiproxy.toxic(faulty_s3.proxy, fault)
    with pytest.raises(StorageError):
        lake.upload(src, "models/m/1")
    toxiproxy.heal(faulty_s3.proxy)
    assert set(_snapshot(lake, "models/m/1")) <= set(expected)  # only complete objects are visible
    lake.upload(src, "models/m/1")
    assert _snapshot(lake, "models/m/1") == expected


def _stall(faulty_s3, toxiproxy) -> None:
    toxiproxy.toxic(faulty_s3.proxy, "stall")


def test_job_create_fails_before_recording_anything_when_the_lake_stalls(
    faulty_s3, toxiproxy, tmp_path: Path
) -> None:
    from domainrag.training.jobs import create_job
    from domainrag.training.spec import EmbeddingJobSpec
    from domainrag.workspace import Workspace

    data = tmp_path / "pairs.jsonl"
    data.write_text('{"query": "pump flow", "positive": "The pump delivers 12 l/h."}\n' * 4)
    ws = Workspace.open(tmp_path / "ws", lake=f"{faulty_s3.prefix}/lake")
    _stall(faulty_s3, toxiproxy)
    spec = EmbeddingJobSpec(name="emb", base_model="all-minilm-l6-v2", dataset=str(data))
    started = time.monotonic()
    with pytest.raises(StorageError) as err:
        create_job(ws, spec, start=False)
    assert time.monotonic() - started < BOUND_S and faulty_s3.url in str(err.value) + str(err.value.hint)
    assert ws.catalog.list("job") == []  # nothing recorded: a re-run starts clean


def test_ingest_checks_the_lake_before_embedding_and_a_rerun_equals_an_undisturbed_ingest(
    faulty_s3, toxiproxy, tmp_path: Path
) -> None:
    from domainrag.workspace import Workspace, create_index, ingest

    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(3):
        (docs / f"doc{i}.md").write_text(f"# Doc {i}\n\nPart {i} of the manual: valve V-{i} opens at {i + 2} bar.")
    ws = Workspace.open(tmp_path / "ws", lake=f"{faulty_s3.prefix}/lake")
    create_index(ws, "clean", "all-minilm-l6-v2")
    expected = sorted(c.chunk_id for c in ingest(ws, "clean", [docs]).chunk_records)

    create_index(ws, "kb", "all-minilm-l6-v2")
    _stall(faulty_s3, toxiproxy)
    with pytest.raises(StorageError):
        ingest(ws, "kb", [docs])
    assert ws.store("kb").count() == 0  # refused before anything was embedded or written
    toxiproxy.heal(faulty_s3.proxy)
    report = ingest(ws, "kb", [docs])
    assert sorted(c.chunk_id for c in report.chunk_records) == expected
    assert ws.store("kb").count() == len(expected) and len(ws.lake.list("chunks/kb")) == 1
