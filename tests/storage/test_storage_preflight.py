"""Preflight checks on local paths, and failure classification from s3fs/botocore exceptions."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError
from fsspec.implementations.local import LocalFileSystem

from domainrag.errors import StorageError
from domainrag.storage.options import resolve
from domainrag.storage.preflight import (
    CheckResult,
    Failure,
    check_list,
    check_read,
    check_write,
    classify,
    preflight,
    require,
)


def client_error(code: str, op: str = "GetObject") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, op)


def raised_from(exc: BaseException, cause: BaseException) -> BaseException:
    try:
        raise exc from cause
    except BaseException as e:
        return e


def test_local_checks(tmp_path: Path) -> None:
    (tmp_path / "data" / "docs").mkdir(parents=True)
    (tmp_path / "data" / "docs" / "a.md").write_text("hello")
    (tmp_path / "empty").mkdir()
    assert check_read(str(tmp_path / "data")).ok
    assert check_read(str(tmp_path / "data" / "docs" / "a.md")).ok
    assert check_read(str(tmp_path / "empty")).detail == "empty prefix"
    assert check_list(str(tmp_path / "data")).ok
    assert check_list(str(tmp_path / "not-yet")).ok  # a new lake prefix is fine to list
    write = check_write(str(tmp_path / "lake"))
    assert write.ok and os.listdir(tmp_path / "lake") == []  # the probe is gone

    missing = check_read(str(tmp_path / "nope"))
    assert (missing.ok, missing.cause) == (False, Failure.NOT_FOUND)
    assert str(tmp_path / "nope") in (missing.hint or "")


def test_write_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def denied(self: object, path: str, value: bytes, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(LocalFileSystem, "pipe_file", denied)
    result = check_write(str(tmp_path / "lake"))
    assert (result.ok, result.cause) == (False, Failure.ACCESS_DENIED)
    assert result.hint == f"give this user write permission on {tmp_path / 'lake'}"


def test_silently_failing_delete_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(LocalFileSystem, "rm_file", lambda self, path, **kw: None)  # like s3fs's bulk rm
    result = check_write(str(tmp_path / "lake"))
    assert (result.ok, result.cause) == (False, Failure.ACCESS_DENIED)
    assert "delete permission" in (result.hint or "") and "still there" in result.detail


def test_invalid_url() -> None:
    for url in ("gs://bucket/x", "s3://"):
        result = check_read(url)
        assert (result.ok, result.cause) == (False, Failure.INVALID_URL)


def test_missing_credentials_needs_no_server(dead_endpoint: str) -> None:
    # botocore signs before it connects: with nothing configured we get NoCredentialsError
    result = check_read("s3://bucket/x", {"endpoint_url": dead_endpoint})
    assert result.cause == Failure.MISSING_CREDENTIALS
    assert "AWS_ACCESS_KEY_ID" in (result.hint or "")


def test_missing_oss_credentials(monkeypatch: pytest.MonkeyPatch, dead_endpoint: str) -> None:
    monkeypatch.setattr("domainrag.storage.options.have_ossfs", lambda: False)
    monkeypatch.setenv("OSS_ENDPOINT", dead_endpoint)
    result = check_read("oss://bucket/x")
    assert result.cause == Failure.MISSING_CREDENTIALS and "OSS_ACCESS_KEY_ID" in (result.hint or "")


@pytest.mark.parametrize(
    "exc,cause,hint_part",
    [
        (raised_from(PermissionError("Access Denied."), client_error("AccessDenied")), Failure.ACCESS_DENIED,
         "grant the role read access (s3:GetObject, s3:ListBucket) to bucket bkt prefix data/set"),
        (PermissionError("Forbidden"), Failure.ACCESS_DENIED, "grant the role read access"),
        (raised_from(PermissionError("signature"), client_error("SignatureDoesNotMatch")),
         Failure.ACCESS_DENIED, "rejected the credentials"),
        (raised_from(PermissionError("unknown key"), client_error("InvalidAccessKeyId")),
         Failure.ACCESS_DENIED, "rejected the credentials"),
        (raised_from(FileNotFoundError("The specified bucket does not exist."), client_error("NoSuchBucket")),
         Failure.BUCKET_MISSING, "bucket bkt does not exist at http://s3.local:9000"),
        (FileNotFoundError("bkt/data/set"), Failure.NOT_FOUND, "does not exist"),
        (EndpointConnectionError(endpoint_url="http://s3.local:9000"), Failure.ENDPOINT_UNREACHABLE,
         "cannot connect to http://s3.local:9000"),
        (raised_from(OSError(22, "The specified bucket is not valid."), client_error("InvalidBucketName")),
         Failure.INVALID_URL, "not a valid bucket name"),
        (NoCredentialsError(), Failure.MISSING_CREDENTIALS, "AWS_SECRET_ACCESS_KEY"),
        (RuntimeError("weird"), Failure.ERROR, "unexpected"),
    ],
)
def test_classify(exc: BaseException, cause: Failure, hint_part: str) -> None:
    resolved = resolve("s3://bkt/data/set", {"endpoint_url": "http://s3.local:9000"}, env={})
    got, hint = classify(exc, "s3://bkt/data/set", "read", resolved)
    assert got == cause
    assert hint_part in hint


def test_write_hint_names_write_permissions() -> None:
    resolved = resolve("s3://bkt/lake", env={})
    _, hint = classify(PermissionError("Access Denied."), "s3://bkt/lake", "write", resolved)
    assert hint == "grant the role write access (s3:PutObject, s3:DeleteObject) to bucket bkt prefix lake"


def test_preflight_and_require(tmp_path: Path) -> None:
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "a.txt").write_text("a")
    results = preflight(reads=[str(tmp_path / "ds"), str(tmp_path / "gone"), str(tmp_path / "ds")],
                        writes=[str(tmp_path / "lake")], lists=[str(tmp_path / "lake")])
    assert [(r.operation, r.ok) for r in results] == [("list", True), ("read", True), ("read", False),
                                                      ("write", True)]  # duplicates checked once, in order
    with pytest.raises(StorageError) as info:
        require([*results, CheckResult("gs://x", "read", False, Failure.INVALID_URL, "use s3://")])
    message = str(info.value)
    assert "2 storage check(s) failed" in message
    assert str(tmp_path / "gone") in message and "gs://x" in message and "use s3://" in message
    assert require(results[:2]) == results[:2]
    assert preflight() == []
