"""Lake keys and URL schemes: nothing may escape the lake root, unknown schemes fail clearly."""

from __future__ import annotations

from pathlib import Path

import pytest

from domainrag.errors import StorageError
from domainrag.storage.lake import Lake, open_url, validate_key
from domainrag.storage.options import split_scheme


@pytest.mark.parametrize("key", ["raw/docs/a.md", "models/m/1/manifest.json", "a", "dir/"])
def test_validate_key_accepts_relative_keys(key: str) -> None:
    assert validate_key(key) == key.strip("/")


@pytest.mark.parametrize(
    "key",
    ["../etc/passwd", "raw/../../x", "raw/..", "./raw", "raw/./x", "..",
     "/etc/passwd", "/abs/key",
     "raw\\..\\x", "C:\\windows", "a\\b",
     ""],
)
def test_validate_key_rejects_traversal_absolute_and_backslash(key: str) -> None:
    with pytest.raises(StorageError):
        validate_key(key)


def test_lake_methods_refuse_escaping_keys(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    (tmp_path / "secret.txt").write_text("outside")
    for call in (lambda: lake.read_bytes("../secret.txt"), lambda: lake.write_text("../x.txt", "x"),
                 lambda: lake.upload(tmp_path / "secret.txt", "/abs"), lambda: lake.url("a/../../b")):
        with pytest.raises(StorageError):
            call()
    assert not (tmp_path / "x.txt").exists()


@pytest.mark.parametrize("url", ["gs://bucket/x", "http://host/x", "ftp://h/x", "hdfs://nn/x", "az://c/x"])
def test_unsupported_scheme(url: str, tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="unsupported storage scheme") as info:
        Lake(url)
    assert "s3://bucket/prefix" in (info.value.hint or "")
    with pytest.raises(StorageError):
        open_url(url)


@pytest.mark.parametrize("url,scheme", [("/tmp/x", "file"), ("rel/dir", "file"), ("file:///tmp/x", "file"),
                                        ("S3://b/p", "s3"), ("s3a://b/p", "s3a"), ("oss://b/p", "oss")])
def test_split_scheme(url: str, scheme: str) -> None:
    assert split_scheme(url) == scheme


@pytest.mark.parametrize("url", ["s3://", "oss:///", "s3a://"])
def test_scheme_without_bucket(url: str) -> None:
    with pytest.raises(StorageError, match="names no bucket"):
        split_scheme(url)
