"""Integration tests against a real S3-compatible server (versitygw, see scripts/services/S3.md)."""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from typer.testing import CliRunner

from domainrag.errors import StorageError
from domainrag.storage import lake as lake_module
from domainrag.storage.lake import Lake
from domainrag.storage.preflight import Failure, check_list, check_read, check_write, preflight, require
from domainrag.workspace import Workspace

if TYPE_CHECKING:  # fixture value types, defined in conftest.py
    from conftest import Reader, S3Server

pytestmark = pytest.mark.integration


@pytest.fixture
def prefix(s3_env: S3Server) -> str:
    """A fresh prefix in the run's bucket for one test."""
    return f"s3://{s3_env.bucket}/t-{uuid.uuid4().hex[:8]}"


def register(ws: Workspace, name: str, src: Path) -> dict:
    return ws.register_model(name, src, kind="llm", fmt="lora-adapter", base_model="smollm2-135m-instruct",
                             source={"type": "path", "path": str(src)})


# -- Lake on s3:// ------------------------------------------------------------------------------------
def test_lake_datasets_roundtrip(prefix: str, tmp_path: Path) -> None:
    lake = Lake(f"{prefix}/lake")
    docs = tmp_path / "docs"
    (docs / "nested").mkdir(parents=True)
    (docs / "a.md").write_text("# A")
    (docs / "nested" / "b.txt").write_text("bee")
    assert lake.upload(docs, "raw/docs") == ["raw/docs/a.md", "raw/docs/nested/b.txt"]
    assert lake.upload(docs / "a.md", "raw/single/a.md") == ["raw/single/a.md"]
    assert lake.list("raw") == ["raw/docs/a.md", "raw/docs/nested/b.txt", "raw/single/a.md"]
    assert lake.list("missing") == []
    assert dict(lake.walk_files("raw/docs")) == {"raw/docs/a.md": 3, "raw/docs/nested/b.txt": 3}

    out = lake.download("raw/docs", tmp_path / "out")
    assert (out / "nested" / "b.txt").read_text() == "bee" and (out / "a.md").read_text() == "# A"
    assert lake.download("raw/single/a.md", tmp_path / "one.md").read_text() == "# A"

    lake.write_json("jobs/j1/spec.json", {"a": 1})
    assert lake.read_json("jobs/j1/spec.json") == {"a": 1}
    lake.append_text("jobs/j1/log.txt", "one\n")
    lake.append_text("jobs/j1/log.txt", "two\n")
    assert lake.read_text("jobs/j1/log.txt") == "one\ntwo\n"
    assert lake.url("raw/docs") == f"{prefix}/lake/raw/docs"
    assert not [k for k in lake.fs.find(lake.path("")) if ".domainrag-tmp-" in k]  # no temp objects left

    lake.delete("raw/docs")
    assert lake.list("raw") == ["raw/single/a.md"] and not lake.exists("raw/docs/a.md")
    with pytest.raises(StorageError, match="does not exist"):
        lake.read_bytes("raw/docs/a.md")


def test_large_file_is_multipart_and_streamed(
    prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lake_module, "TRANSFER_BLOCK", 5 * 2**20)  # S3's minimum part size
    big = tmp_path / "weights.bin"
    data = os.urandom(11 * 2**20)
    big.write_bytes(data)
    lake = Lake(f"{prefix}/lake")
    requests: list[tuple[str, str | None]] = []
    real_call = lake.fs._call_s3

    async def spy(method: str, *args: object, **kwargs: object) -> object:
        requests.append((method, kwargs.get("Range")))  # type: ignore[arg-type]
        return await real_call(method, *args, **kwargs)

    monkeypatch.setattr(lake.fs, "_call_s3", spy)
    lake.upload(big, "models/m/1/artifact/weights.bin")
    assert [m for m, _ in requests].count("upload_part") == 3  # streamed in 5 MiB parts
    requests.clear()
    out = lake.download("models/m/1/artifact/weights.bin", tmp_path / "back.bin")
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(data).digest()
    ranges = [r for m, r in requests if m == "get_object" and r]
    # bounded blocks, never the whole object at once
    assert ranges == ["bytes=0-5242879", "bytes=5242880-10485759", "bytes=10485760-11534335"]
    with lake.open("models/m/1/artifact/weights.bin", block_size=2**20) as fh:
        fh.seek(7 * 2**20)
        assert fh.read(32) == data[7 * 2**20 : 7 * 2**20 + 32]
        assert fh.blocksize == 2**20  # ranged reads of 1 MiB, not the whole object


def test_reader_cannot_delete_and_lake_says_so(s3_env: S3Server, s3_reader: Reader) -> None:
    lake = Lake(s3_reader.prefix_url, {"key": s3_reader.key, "secret": s3_reader.secret})
    assert lake.read_text("doc.txt") == "read me"
    with pytest.raises(StorageError, match="could not delete"):  # s3fs's rm alone would say nothing
        lake.delete("doc.txt")
    assert s3_env.root_fs().exists(f"{s3_env.bucket}/readonly/doc.txt")


# -- Workspace with an s3:// lake ---------------------------------------------------------------------
@pytest.fixture
def s3_workspace(prefix: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Workspace:
    monkeypatch.setenv("DOMAINRAG_LAKE", f"{prefix}/lake")
    ws = Workspace.open(tmp_path / "ws")
    assert ws.settings.lake == f"{prefix}/lake" and not ws.lake.is_local
    return ws


def test_workspace_registers_and_loads_model(s3_workspace: Workspace, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch,
                                             make_adapter: Callable[[Path], Path]) -> None:
    ws = s3_workspace
    src = make_adapter(tmp_path / "adapter")
    record = register(ws, "support-bot", src)
    assert record["uri"] == f"{ws.settings.lake}/models/support-bot/1"
    manifest = ws.lake.read_json("models/support-bot/1/manifest.json")
    assert {f["path"] for f in manifest["files"]} == {
        "artifact/adapter_config.json", "artifact/adapter_model.safetensors", "artifact/tokenizer.json",
        "artifact/sub/extra.txt"}

    downloads: list[str] = []
    real_download = Lake.download
    monkeypatch.setattr(Lake, "download", lambda self, key, local: downloads.append(key) or
                        real_download(self, key, local))
    folder = ws.model_dir("support-bot")
    assert folder.is_relative_to(tmp_path / "cache")  # DOMAINRAG_CACHE, keyed by the manifest digest
    assert manifest["digest"][:16] in folder.name
    assert (folder / "artifact" / "adapter_model.safetensors").read_bytes() == (
        src / "adapter_model.safetensors").read_bytes()
    assert ws.model_dir("support-bot") == folder
    assert downloads == ["models/support-bot/1"]  # later loads come from the verified local cache

    # a new version gets its own cache entry
    (src / "tokenizer.json").write_text('{"version": "2.0"}')
    assert register_new_version(ws, src)["version"] == 2
    assert ws.model_dir("support-bot") != folder and len(downloads) == 2


def register_new_version(ws: Workspace, src: Path) -> dict:
    return ws.register_model("support-bot", src, kind="llm", fmt="lora-adapter",
                             base_model="smollm2-135m-instruct", source={"type": "path"}, new_version=True)


def test_corrupt_object_is_named(s3_workspace: Workspace, s3_env: S3Server, tmp_path: Path,
                                 make_adapter: Callable[[Path], Path]) -> None:
    ws = s3_workspace
    src = make_adapter(tmp_path / "adapter")
    register(ws, "m", src)
    target = ws.lake.path("models/m/1/artifact/adapter_model.safetensors")
    good = (src / "adapter_model.safetensors").read_bytes()
    s3_env.root_fs().pipe_file(target, bytes([good[0] ^ 0xFF]) + good[1:])  # same size, one byte flipped
    with pytest.raises(StorageError, match=r"adapter_model\.safetensors is corrupt"):
        ws.model_dir("m")


def test_interrupted_upload_leaves_no_manifest(s3_workspace: Workspace, tmp_path: Path,
                                               make_adapter: Callable[[Path], Path]) -> None:
    ws = s3_workspace
    src = make_adapter(tmp_path / "adapter")
    real_put = ws.lake.fs.put_file
    count = {"n": 0}

    def flaky_put(*args: object, **kwargs: object) -> object:
        count["n"] += 1
        if count["n"] == 3:
            raise ConnectionResetError("network dropped mid-upload")
        return real_put(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ws.lake.fs, "put_file", flaky_put)
        with pytest.raises(StorageError, match=r"connection failed \(network dropped mid-upload") as err:
            register(ws, "m", src)
        assert isinstance(err.value.__cause__, ConnectionResetError)  # the cause is kept, named with the endpoint
    assert len(ws.lake.list("models/m/1")) == 2  # two complete files, nothing else visible
    assert not ws.lake.exists("models/m/1/manifest.json") and ws.model_record("m") is None
    assert not [k for k in ws.lake.fs.find(ws.lake.path("models/m")) if ".domainrag-tmp-" in k]

    register(ws, "m", src)  # the retry replaces the leftovers
    assert len(ws.lake.list("models/m/1")) == 5
    ws.model_dir("m")


# -- preflight against the real server -----------------------------------------------------------------
def test_preflight_passes_with_valid_credentials(prefix: str, s3_env: S3Server) -> None:
    Lake(f"{prefix}/lake").write_text("raw/d/a.txt", "a")
    results = preflight(reads=[f"{prefix}/lake/raw/d", f"{prefix}/lake/raw/d/a.txt"],
                        writes=[f"{prefix}/lake"], lists=[f"{prefix}/lake", f"{prefix}/new-prefix"])
    assert all(r.ok for r in results), results
    require(results)
    assert s3_env.root_fs().find(f"{prefix.removeprefix('s3://')}/lake") == [
        f"{prefix.removeprefix('s3://')}/lake/raw/d/a.txt"]  # the write probe was removed


def test_wrong_secret_is_access_denied(
    prefix: str, s3_env: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    Lake(f"{prefix}/lake").write_text("a.txt", "a")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret-key")
    lake = f"{prefix}/lake"
    for result in (check_read(f"{lake}/a.txt"), check_read(lake), check_list(lake), check_write(lake)):
        assert (result.ok, result.cause) == (False, Failure.ACCESS_DENIED), result
        assert "rejected the credentials (SignatureDoesNotMatch)" in (result.hint or "")
        assert "not-the-secret-key" not in str(result) and s3_env.secret not in str(result)
    with pytest.raises(StorageError, match="access denied"):
        require([check_read(f"{prefix}/lake/a.txt")])


def test_missing_bucket(s3_env: S3Server) -> None:
    bucket = f"domainrag-missing-{uuid.uuid4().hex[:8]}"
    for result in (check_read(f"s3://{bucket}/x"), check_list(f"s3://{bucket}/x"), check_write(f"s3://{bucket}/x")):
        assert result.cause == Failure.BUCKET_MISSING, result
        assert f"bucket {bucket} does not exist at {s3_env.url}" in (result.hint or "")
    assert not s3_env.root_fs().exists(bucket)  # the write check did not create it


def test_server_down_is_endpoint_unreachable(s3_env: S3Server, dead_endpoint: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", dead_endpoint)
    start = time.monotonic()
    results = preflight(reads=[f"s3://{s3_env.bucket}/x"], writes=[f"s3://{s3_env.bucket}/y"])
    assert time.monotonic() - start < 10  # fails fast instead of retrying for long
    for result in results:
        assert result.cause == Failure.ENDPOINT_UNREACHABLE, result
        assert dead_endpoint in (result.hint or "")


def test_not_found(prefix: str) -> None:
    result = check_read(f"{prefix}/nothing/here.txt")
    assert result.cause == Failure.NOT_FOUND


def test_read_only_user(s3_env: S3Server, s3_reader: Reader) -> None:
    creds = {"key": s3_reader.key, "secret": s3_reader.secret}
    assert check_read(s3_reader.prefix_url, creds).ok
    assert check_read(f"{s3_reader.prefix_url}/doc.txt", creds).ok
    assert check_list(s3_reader.prefix_url, creds).ok
    write = check_write(s3_reader.prefix_url, creds)
    assert (write.ok, write.cause) == (False, Failure.ACCESS_DENIED)
    bucket = s3_reader.prefix_url.split("/")[2]
    assert write.hint == (f"grant the role write access (s3:PutObject, s3:DeleteObject) "
                          f"to bucket {bucket} prefix readonly")
    assert s3_reader.secret not in str(write)


def test_oss_urls_through_s3_api(s3_env: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """oss:// without ossfs goes through s3fs with OSS_* credentials (here against versitygw, which
    needs V4 signing and path-style addressing instead of OSS's defaults, set as overrides)."""
    monkeypatch.setattr("domainrag.storage.options.have_ossfs", lambda: False)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("OSS_ENDPOINT", s3_env.url)
    monkeypatch.setenv("OSS_ACCESS_KEY_ID", s3_env.key)
    monkeypatch.setenv("OSS_ACCESS_KEY_SECRET", s3_env.secret)
    monkeypatch.setenv("DOMAINRAG_STORAGE_OPTIONS", json.dumps(
        {"config_kwargs": {"signature_version": "s3v4", "s3": {"addressing_style": "path"}}}))
    url = f"oss://{s3_env.bucket}/oss-{uuid.uuid4().hex[:8]}"
    lake = Lake(url)
    lake.write_text("raw/a.txt", "via oss")
    assert lake.read_text("raw/a.txt") == "via oss" and lake.url("raw/a.txt") == f"{url}/raw/a.txt"
    assert all(r.ok for r in preflight(reads=[f"{url}/raw"], writes=[url]))


# -- doctor -------------------------------------------------------------------------------------------------
def test_doctor_on_s3_workspace(s3_workspace: Workspace, s3_env: S3Server, tmp_path: Path,
                                make_adapter: Callable[[Path], Path], cli_for) -> None:
    ws = s3_workspace
    register(ws, "m", make_adapter(tmp_path / "adapter"))
    ws.lake.upload(make_adapter(tmp_path / "ds"), "raw/ds")
    ws.catalog.put("dataset", "ds", {"uri": ws.lake.url("raw/ds"), "files": 4})
    app = cli_for(ws)
    runner = CliRunner(env={"COLUMNS": "250"})

    ok = runner.invoke(app, ["doctor"])
    assert ok.exit_code == 0, ok.output
    assert "all 4 checks passed" in ok.output and s3_env.secret not in ok.output

    bad = runner.invoke(app, ["doctor", "--storage-options", '{"secret": "wrong-secret-value"}'])
    assert bad.exit_code == 1
    assert "access denied" in bad.output and "4 of 4 checks failed" in bad.output
    assert "wrong-secret-value" not in bad.output and s3_env.secret not in bad.output
    assert "'secret': '***'" in bad.output


def test_app_create_preflights_the_models_it_will_read(s3_workspace: Workspace, tmp_path: Path,
                                                       make_adapter: Callable[[Path], Path]) -> None:
    """An app whose model cannot be read from the lake is refused up front, naming the object."""
    from domainrag.errors import StorageError
    from domainrag.serving.apps import AppSpec, validate_app

    ws = s3_workspace
    register(ws, "bot", make_adapter(tmp_path / "adapter"))
    ws.lake.fs.rm(ws.lake.path("models/bot/1/manifest.json"))  # e.g. a role without read access to it
    spec = AppSpec.model_validate({"name": "A", "model": "bot", "retrieval": {"index": "kb"}})
    with pytest.raises(StorageError) as err:
        validate_app(ws, spec)
    assert "storage check(s) failed" in str(err.value)  # the preflight, before any model loading
    assert "read s3://" in str(err.value) and "models/bot/1/manifest.json" in str(err.value)
