"""Lake writes are atomic, interrupted uploads never look complete, and reads stream."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from domainrag.errors import NotFoundError, StorageError
from domainrag.storage.lake import Lake, is_temp_key
from domainrag.workspace import Workspace


class Boom(RuntimeError):
    pass


def fail_after(monkeypatch: pytest.MonkeyPatch, obj: object, name: str, calls: int) -> None:
    """Make ``obj.name`` raise on call number ``calls + 1`` (an interruption mid-way)."""
    real = getattr(obj, name)
    count = {"n": 0}

    def wrapper(*args, **kwargs):
        count["n"] += 1
        if count["n"] > calls:
            raise Boom(f"interrupted in {name}")
        return real(*args, **kwargs)

    monkeypatch.setattr(obj, name, wrapper)


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lake = Lake(str(tmp_path / "lake"))
    lake.write_text("a/b.txt", "old")
    fail_after(monkeypatch, lake.fs, "mv", 0)  # crash after the data is written, before the move
    with pytest.raises(Boom):
        lake.write_text("a/b.txt", "new content")
    assert lake.read_text("a/b.txt") == "old"  # readers still see the complete old object
    assert os.listdir(tmp_path / "lake" / "a") == ["b.txt"]  # the temporary object was cleaned up


def test_temporary_objects_are_hidden_from_listings(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    lake.write_text("d/x.txt", "x")
    # a crashed writer's leftover
    (tmp_path / "lake" / "d" / "y.bin.domainrag-tmp-0123abcd").write_bytes(b"half")
    assert lake.list("d") == ["d/x.txt"]
    assert is_temp_key("d/y.bin.domainrag-tmp-0123abcd") and not is_temp_key("d/y.tmp-notours")
    out = lake.download("d", tmp_path / "out")
    assert sorted(p.name for p in out.iterdir()) == ["x.txt"]


def test_interrupted_folder_upload_leaves_only_complete_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_adapter: Callable[[Path], Path]
) -> None:
    src = make_adapter(tmp_path / "adapter")
    lake = Lake(str(tmp_path / "lake"))
    fail_after(monkeypatch, lake.fs, "put_file", 2)
    with pytest.raises(Boom):
        lake.upload(src, "models/m/1/artifact")
    keys = lake.list("models/m/1")
    assert len(keys) == 2
    for k in keys:  # whatever is there is complete
        assert lake.read_bytes(k) == (src / k.removeprefix("models/m/1/artifact/")).read_bytes()
    assert not [p for p in (tmp_path / "lake").rglob("*") if is_temp_key(p.name)]


def test_interrupted_register_model_leaves_no_manifest(tmp_path: Path, make_adapter: Callable[[Path], Path]) -> None:
    ws = Workspace.open(tmp_path / "ws")
    src = make_adapter(tmp_path / "adapter")
    with pytest.MonkeyPatch.context() as mp, pytest.raises(Boom):
        fail_after(mp, ws.lake.fs, "put_file", 2)
        ws.register_model("m", src, kind="llm", fmt="lora-adapter", base_model="smollm2-135m-instruct",
                          source={"type": "path"})
    assert ws.lake.list("models/m/1")  # some files were copied ...
    assert not ws.lake.exists("models/m/1/manifest.json")  # ... but the artifact is not marked complete
    assert ws.model_record("m") is None
    with pytest.raises(NotFoundError):
        ws.model_dir("m")

    record = ws.register_model("m", src, kind="llm", fmt="lora-adapter", base_model="smollm2-135m-instruct",
                               source={"type": "path"})
    assert record["version"] == 1  # the retry reuses the version and replaces the leftovers
    assert (ws.model_dir("m") / "artifact" / "sub" / "extra.txt").read_text() == "extra"


def test_download_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lake = Lake(str(tmp_path / "lake"))
    lake.write_bytes("big.bin", b"x" * 1000)
    target = tmp_path / "out" / "big.bin"

    def broken_get(src: str, dst: str, **kwargs: object) -> None:
        Path(dst).write_bytes(b"x" * 10)  # a partial file ...
        raise Boom("connection lost")

    monkeypatch.setattr(lake.fs, "get_file", broken_get)
    with pytest.raises(Boom):
        lake.download("big.bin", target)
    assert not target.exists() and list(target.parent.iterdir()) == []  # ... never under the final name


def test_missing_objects_raise_storage_errors(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    for call in (lambda: lake.read_bytes("nope"), lambda: lake.open("nope"),
                 lambda: lake.download("nope", tmp_path / "x"), lambda: lake.upload(tmp_path / "nope", "k")):
        with pytest.raises(StorageError, match="does not exist"):
            call()
    with pytest.raises(StorageError):
        lake.open("x", "wb")


def test_open_streams_ranges(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    data = os.urandom(3 * 2**20)
    lake.write_bytes("w.bin", data)
    h = hashlib.sha256()
    with lake.open("w.bin", block_size=256 * 1024) as fh:
        fh.seek(2**20)
        assert fh.read(16) == data[2**20 : 2**20 + 16]
        fh.seek(0)
        while block := fh.read(100_000):
            h.update(block)
    assert h.hexdigest() == hashlib.sha256(data).hexdigest()


def test_delete(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    lake.write_text("p/a.txt", "a")
    lake.delete("p")
    lake.delete("p")  # idempotent
    assert lake.list("p") == []
