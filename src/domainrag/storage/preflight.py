"""Preflight checks: can we read, list and write the storage locations a command needs?

Run before long work (training, ingest, registering a model) so a missing bucket or a missing
permission fails at once with a precise hint, not after model loading or training. Each check returns a
:class:`CheckResult`; failures are classified (:class:`Failure`) from the exception chain s3fs
and botocore raise, and messages never contain credentials.
"""

from __future__ import annotations

import errno
import posixpath
import uuid
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from domainrag.errors import StorageError
from domainrag.storage.options import ResolvedStorage, deadline, merge_options, open_fs, resolve, scrub

Operation = Literal["read", "list", "write"]

# Fail fast: one connection attempt with a short timeout instead of botocore's retries.
FAST_FAIL_S3: dict[str, Any] = {
    "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 2, "read_timeout": 10}
}
PROBE_DATA = b"domainrag preflight probe\n"
PROBE_DEADLINE_S = 15.0


class Failure(StrEnum):
    MISSING_CREDENTIALS = "missing credentials"
    ACCESS_DENIED = "access denied"
    BUCKET_MISSING = "bucket missing"
    ENDPOINT_UNREACHABLE = "endpoint unreachable"
    NOT_FOUND = "not found"
    INVALID_URL = "invalid URL"
    ERROR = "error"


@dataclass(frozen=True)
class CheckResult:
    """Outcome of one check; ``cause``/``hint`` are set when ``ok`` is false."""

    url: str
    operation: Operation
    ok: bool
    cause: Failure | None = None
    hint: str | None = None
    detail: str = ""

    def __str__(self) -> str:
        if self.ok:
            return f"{self.operation} {self.url}: ok" + (f" ({self.detail})" if self.detail else "")
        text = f"{self.operation} {self.url}: {self.cause}" + (f": {self.detail}" if self.detail else "")
        return text + (f" (hint: {self.hint})" if self.hint else "")


# -- checks ------------------------------------------------------------------------------------------
def check_read(url: str, options: Mapping[str, Any] | None = None) -> CheckResult:
    """Read access: the object (or, for a prefix, its first object) exists and one byte reads back."""
    return _run(url, "read", options, _read)


def check_list(url: str, options: Mapping[str, Any] | None = None) -> CheckResult:
    """List access to a prefix; an empty or not yet existing prefix is fine, a missing bucket is not."""
    return _run(url, "list", options, _list)


def check_write(url: str, options: Mapping[str, Any] | None = None) -> CheckResult:
    """Write access under a prefix: put a tiny probe object, delete it, and verify it is gone.

    The delete goes through ``rm_file`` (one ``DeleteObject`` that raises), and we look again
    afterwards, because s3fs's bulk ``rm`` silently ignores per-object errors.
    """
    return _run(url, "write", options, _write)


def preflight(
    reads: Iterable[str] = (),
    writes: Iterable[str] = (),
    *,
    lists: Iterable[str] = (),
    options: Mapping[str, Any] | None = None,
    max_workers: int = 8,
) -> list[CheckResult]:
    """Run all checks (concurrently) and return their results in order: lists, reads, writes."""
    jobs = [(check_list, u) for u in _unique(lists)] + [(check_read, u) for u in _unique(reads)]
    jobs += [(check_write, u) for u in _unique(writes)]
    if not jobs:
        return []
    with ThreadPoolExecutor(max_workers=min(max_workers, len(jobs))) as pool:
        return list(pool.map(lambda job: job[0](job[1], options), jobs))


def require(results: Sequence[CheckResult]) -> list[CheckResult]:
    """Raise one :class:`StorageError` listing every failed check; return the results otherwise."""
    failed = [r for r in results if not r.ok]
    if failed:
        lines = "\n".join(f"  - {r}" for r in failed)
        hints = list(dict.fromkeys(r.hint for r in failed if r.hint))
        raise StorageError(f"{len(failed)} storage check(s) failed:\n{lines}", hint="; ".join(hints) or None)
    return list(results)


# -- implementation ------------------------------------------------------------------------------
def _unique(urls: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(urls))


def _run(url: str, operation: Operation, options: Mapping[str, Any] | None, body: Any) -> CheckResult:
    resolved: ResolvedStorage | None = None
    try:
        resolved = resolve(url, options)
        overrides = dict(options or {})
        if resolved.backend == "s3fs":
            overrides = merge_options(FAST_FAIL_S3, overrides)
        # A private instance: no cached listings from earlier calls, fast-fail settings stay local.
        fs, path, resolved = open_fs(url, overrides, skip_instance_cache=True)
        if hasattr(fs, "retries"):
            fs.retries = 1  # s3fs re-tries every failed call 5 times on top of botocore's attempts
        detail = body(fs, path.rstrip("/"), resolved) or ""
        return CheckResult(url, operation, True, detail=detail)
    except Exception as exc:
        cause, hint = classify(exc, url, operation, resolved)
        return CheckResult(url, operation, False, cause, hint, _describe(exc, resolved))


def _read(fs: Any, path: str, resolved: ResolvedStorage) -> str:
    try:
        info = fs.info(path)
    except PermissionError as exc:
        if _error_code(exc) in ("403", "Forbidden"):
            # A HEAD answer has no body, so a wrong secret and a missing permission both read
            # "Forbidden"; a one-byte GET carries the real error code (raised, chained to this one).
            fs.cat_file(path, start=0, end=1)
        raise
    if info.get("type") == "directory":
        first = _first_file(fs, path)
        if first is None:
            return "empty prefix"
        info, path = fs.info(first), first
    size = int(info.get("size") or 0)
    if size:
        fs.cat_file(path, start=0, end=1)
    return ""


def _first_file(fs: Any, path: str, depth: int = 4) -> str | None:
    """First file under a prefix without listing all of it (ls one level at a time)."""
    entries = sorted(fs.ls(path, detail=True), key=lambda e: (e.get("type") == "directory", e["name"]))
    for entry in entries:
        if entry.get("type") != "directory":
            return str(entry["name"])
        if depth > 0 and (found := _first_file(fs, entry["name"], depth - 1)):
            return found
    return None


def _list(fs: Any, path: str, resolved: ResolvedStorage) -> str:
    try:
        entries = fs.ls(path)
    except FileNotFoundError as exc:
        if _is_bucket_missing(exc):
            raise
        return "empty prefix"
    return f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}"


def _write(fs: Any, path: str, resolved: ResolvedStorage) -> str:
    probe = posixpath.join(path, f".domainrag-preflight-{uuid.uuid4().hex[:12]}")
    if not resolved.is_remote:
        fs.makedirs(path, exist_ok=True)  # on object stores this would create a missing bucket
    # fsspec's blocking wrapper takes a deadline: a write can wait forever on an endpoint that
    # accepts the connection and never answers (see storage.options.WRITE_DEADLINE_S).
    fs.pipe_file(probe, PROBE_DATA, **deadline(fs, PROBE_DEADLINE_S))
    try:
        fs.rm_file(probe)
    except Exception as exc:
        raise ProbeLeftError(f"the probe object was written but could not be deleted ({exc})") from exc
    fs.invalidate_cache(probe)
    try:
        still_there = fs.exists(probe)
    except PermissionError:
        return "write and delete succeeded; deletion not verified (no read access)"
    if still_there:
        raise ProbeLeftError("the delete returned success but the probe object is still there")
    return ""


class ProbeLeftError(PermissionError):
    """The probe was written but could not be removed: delete permission is missing."""


# -- classification ------------------------------------------------------------------------------
_DENIED_CODES = {"AccessDenied", "AllAccessDisabled", "AccountProblem", "403", "Forbidden"}
_BAD_CREDENTIAL_CODES = {"SignatureDoesNotMatch", "InvalidAccessKeyId", "InvalidToken", "ExpiredToken",
                         "InvalidSecurity", "TokenRefreshRequired"}


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in seen:
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    return seen


def _error_code(exc: BaseException) -> str | None:
    for e in _chain(exc):
        response = getattr(e, "response", None)
        if isinstance(response, Mapping):
            code = response.get("Error", {}).get("Code")
            if code:
                return str(code)
    return None


def _is_bucket_missing(exc: BaseException) -> bool:
    if _error_code(exc) == "NoSuchBucket":
        return True
    return any("bucket does not exist" in str(e).lower() or "nosuchbucket" in type(e).__name__.lower()
               for e in _chain(exc))


def _bucket_prefix(url: str) -> tuple[str, str]:
    rest = url.split("://", 1)[1] if "://" in url else url
    bucket, _, prefix = rest.partition("/")
    return bucket, prefix.strip("/") or "/"


def classify(
    exc: BaseException, url: str, operation: Operation, resolved: ResolvedStorage | None = None
) -> tuple[Failure, str]:
    """Failure class and an actionable hint for an exception raised while accessing ``url``."""
    from botocore import exceptions as bx  # a dependency of s3fs; imported here to keep local use light

    chain = _chain(exc)
    remote = resolved is not None and resolved.is_remote
    endpoint = resolved.endpoint if resolved is not None else "the endpoint"
    bucket, prefix = _bucket_prefix(url)
    scheme = resolved.scheme if resolved is not None else "s3"
    cred_vars = ("OSS_ACCESS_KEY_ID and OSS_ACCESS_KEY_SECRET" if scheme == "oss"
                 else "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)")
    code = _error_code(exc)

    if isinstance(exc, StorageError) and resolved is None:
        return Failure.INVALID_URL, exc.hint or "use a local path, file://, s3://bucket/prefix or oss://..."
    if any(isinstance(e, bx.NoCredentialsError | bx.PartialCredentialsError | bx.ProfileNotFound)
           for e in chain):
        return Failure.MISSING_CREDENTIALS, (
            f"set {cred_vars}, or pass --storage-options '{{\"key\": ..., \"secret\": ...}}'")
    if any(isinstance(e, bx.ConnectionError | bx.HTTPClientError | ConnectionError | TimeoutError)
           for e in chain) or any(type(e).__name__.startswith(("ClientConnector", "ServerDisconnected"))
                                  for e in chain):
        var = "OSS_ENDPOINT" if scheme == "oss" else "AWS_ENDPOINT_URL"
        tls = " (TLS failed: is it http:// rather than https://?)" if any(
            isinstance(e, bx.SSLError) for e in chain) else ""
        return Failure.ENDPOINT_UNREACHABLE, (
            f"cannot connect to {endpoint}{tls}: check that it is running and reachable, and {var} "
            "(or endpoint_url in --storage-options)")
    if code in _BAD_CREDENTIAL_CODES:
        return Failure.ACCESS_DENIED, (
            f"{endpoint} rejected the credentials ({code}): check {cred_vars}")
    if isinstance(exc, ProbeLeftError):
        return Failure.ACCESS_DENIED, (
            f"grant the role delete access (s3:DeleteObject) to bucket {bucket} prefix {prefix}" if remote
            else f"give this user delete permission on {url}")
    if isinstance(exc, PermissionError) or code in _DENIED_CODES:
        if remote:
            access = {"read": "read access (s3:GetObject, s3:ListBucket)",
                      "list": "list access (s3:ListBucket)",
                      "write": "write access (s3:PutObject, s3:DeleteObject)"}[operation]
            return Failure.ACCESS_DENIED, f"grant the role {access} to bucket {bucket} prefix {prefix}"
        return Failure.ACCESS_DENIED, f"give this user {operation} permission on {url}"
    if isinstance(exc, FileNotFoundError) or code in ("NoSuchKey", "404"):
        if remote and _is_bucket_missing(exc):
            return Failure.BUCKET_MISSING, (
                f"bucket {bucket} does not exist at {endpoint}: create it or fix the URL/endpoint")
        return Failure.NOT_FOUND, f"{url} does not exist: check the path, or upload/register it first"
    if code == "InvalidBucketName" or (isinstance(exc, OSError) and exc.errno == errno.EINVAL and remote):
        return Failure.INVALID_URL, f"{bucket!r} is not a valid bucket name (3-63 of a-z, 0-9, '-', '.')"
    if isinstance(exc, StorageError | ImportError | ValueError):
        return Failure.INVALID_URL, getattr(exc, "hint", None) or "check the URL and --storage-options"
    return Failure.ERROR, f"unexpected error from {endpoint}; see the detail"


def _describe(exc: BaseException, resolved: ResolvedStorage | None) -> str:
    """One-line message of an exception, with any credential value scrubbed."""
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    text = f"{type(exc).__name__}: {text}" if not isinstance(exc, StorageError) else text
    text = " ".join(text.split())
    if resolved is not None:
        text = scrub(text, resolved.options)
    return text[:300]
