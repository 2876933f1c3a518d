"""The data lake: one storage interface over fsspec, so local folders, ``s3://`` and ``oss://``
work the same for every caller.

Layout (object-store style keys under the lake root)::

    raw/<dataset>/...            uploaded datasets and documents
    chunks/<index>/...           chunked documents (JSONL) per ingest
    jobs/<job-id>/               spec.json, log.txt, metrics.jsonl, checkpoints/, output/
    models/<name>/<version>/     immutable model artifacts + manifest.json

Endpoint and credentials come from :mod:`domainrag.storage.options` (environment, then
``DOMAINRAG_STORAGE_OPTIONS``, then explicit options).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import fsspec
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.exceptions import HTTPClientError
from fsspec.exceptions import FSTimeoutError

from domainrag.errors import StorageError
from domainrag.storage.options import (
    SUPPORTED_SCHEMES,
    deadline,
    open_fs,
    redact,
    resolve,
    split_scheme,
    write_deadline,
)

__all__ = ["SUPPORTED_SCHEMES", "Lake", "open_url", "sha256_file", "split_scheme", "validate_key"]

# Transfers move data in blocks of this size with at most this many in flight, so memory stays
# bounded (~32 MiB) however big a model file is. 8 MiB is above S3's 5 MiB minimum part size.
TRANSFER_BLOCK = 8 * 2**20
TRANSFER_CONCURRENCY = 4

# Marker of in-flight temporary objects; list() hides them, so an interrupted write is invisible.
_TMP_MARK = ".domainrag-tmp-"
_TMP_RE = re.compile(re.escape(_TMP_MARK) + r"[0-9a-f]{8}$")

# What a silent, slow or dead endpoint raises once its timeouts and bounded retries are spent.
_UNREACHABLE = (FSTimeoutError, BotoConnectionError, HTTPClientError, TimeoutError, ConnectionError)


def validate_key(key: str) -> str:
    """Reject keys that could escape the lake root (``..``) or are absolute."""
    if not key or key.startswith("/") or "\\" in key:
        raise StorageError(f"invalid lake key {key!r}", hint="use a relative key such as 'raw/docs/a.md'")
    parts = key.split("/")
    if any(p in ("..", ".") for p in parts):
        raise StorageError(f"invalid lake key {key!r}: path traversal ('..') is not allowed")
    return key.strip("/")


def is_temp_key(key: str) -> bool:
    """True for the temporary objects written before the final move."""
    return bool(_TMP_RE.search(key))


class Lake:
    """Object-store view of one root URL. All paths given to methods are keys relative to the root.

    ``storage_options`` are merged over the options resolved from the environment; ``None``
    means environment only.
    """

    def __init__(self, root: str, storage_options: dict[str, Any] | None = None) -> None:
        split_scheme(root)
        self.root = root.rstrip("/")
        self.fs, self._root_path, self.resolved = open_fs(self.root, storage_options)
        self.storage_options = self.resolved.options  # holds credentials: log redact(...) only
        self._root_path = self._root_path.rstrip("/")
        if self.is_local:
            Path(self._root_path).mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"Lake({self.root!r}, {redact(self.storage_options)!r})"

    @property
    def is_local(self) -> bool:
        return "file" in (self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,))

    @property
    def _is_s3(self) -> bool:
        protocol = self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        return "s3" in protocol

    def _transfer_kwargs(self) -> dict[str, int]:
        """Bounded block size and parallelism for s3fs transfers (other backends stream as they do)."""
        return {"chunksize": TRANSFER_BLOCK, "max_concurrency": TRANSFER_CONCURRENCY} if self._is_s3 else {}

    @contextlib.contextmanager
    def _answering(self, operation: str, key: str = "") -> Iterator[None]:
        """Turn a timed-out or refused lake call into a :class:`StorageError` naming the endpoint."""
        try:
            yield
        except _UNREACHABLE as exc:
            what = ("did not answer within the deadline" if isinstance(exc, TimeoutError)
                    else f"connection failed ({str(exc) or type(exc).__name__})")
            raise StorageError(
                f"lake {operation} of {self.url(key) if key else self.root} failed: {self.resolved.endpoint} {what}",
                hint="check that the endpoint is up and reachable (`domainrag doctor`); "
                "timeouts and retries can be set in DOMAINRAG_STORAGE_OPTIONS config_kwargs",
            ) from exc

    def _deadline(self, nbytes: int = 0) -> dict[str, float]:
        """``timeout=`` for fsspec's blocking wrapper of an async backend (local files need none)."""
        return deadline(self.fs, write_deadline(nbytes))

    def path(self, key: str) -> str:
        """Backend path (no scheme) of a key."""
        return posixpath.join(self._root_path, validate_key(key)) if key else self._root_path

    def url(self, key: str = "") -> str:
        """Full URL of a key, e.g. ``s3://bucket/prefix/models/x/1``."""
        return f"{self.root}/{validate_key(key)}" if key else self.root

    def local_path(self, key: str) -> Path:
        """Local filesystem path of a key; only for local lakes."""
        if not self.is_local:
            raise StorageError(f"{self.url(key)} is not on the local filesystem")
        return Path(self.path(key))

    # -- reads ---------------------------------------------------------------------------------
    def exists(self, key: str) -> bool:
        with self._answering("lookup", key):
            return bool(self.fs.exists(self.path(key), **self._deadline()))

    def read_bytes(self, key: str) -> bytes:
        """Whole object in memory: for small files (manifests, specs); use :meth:`open` for big ones."""
        try:
            with self._answering("read", key):
                return self.fs.cat_file(self.path(key), **self._deadline())
        except FileNotFoundError as exc:
            raise StorageError(f"{self.url(key)} does not exist") from exc

    def read_text(self, key: str) -> str:
        return self.read_bytes(key).decode("utf-8")

    def read_json(self, key: str) -> Any:
        return json.loads(self.read_text(key))

    def open(self, key: str, mode: str = "rb", block_size: int = TRANSFER_BLOCK) -> IO[Any]:
        """Streamed, seekable reader of one object: ranged requests of ``block_size`` bytes."""
        if "r" not in mode:
            raise StorageError("Lake.open is for reading; use write_bytes/upload, which are atomic")
        try:
            with self._answering("open", key):
                return self.fs.open(self.path(key), mode, block_size=block_size)
        except FileNotFoundError as exc:
            raise StorageError(f"{self.url(key)} does not exist") from exc

    def list(self, prefix: str = "") -> list[str]:
        """Keys of all files under a prefix, sorted (in-flight temporary objects are left out)."""
        base = self.path(prefix) if prefix else self._root_path
        with self._answering("listing", prefix):
            if not self.fs.exists(base, **self._deadline()):
                return []
            found = self.fs.find(base, **self._deadline())
        root = self._root_path + "/"
        keys = (p[len(root) :] if p.startswith(root) else p for p in found)
        return sorted(k for k in keys if not is_temp_key(k))

    def download(self, key: str, local: str | os.PathLike[str]) -> Path:
        """Copy a file or a whole prefix to a local path, streaming in bounded blocks.

        Each file lands under a temporary name and is renamed when complete, so an interrupted
        download never leaves a truncated file under its final name.
        """
        local = Path(local)
        src = self.path(key)
        with self._answering("lookup", key):
            is_dir = self.fs.isdir(src, **self._deadline())
        if is_dir:
            local.mkdir(parents=True, exist_ok=True)
            base = validate_key(key)
            for k in self.list(key):
                self._get(self.path(k), local / k[len(base) :].lstrip("/"))
        else:
            self._get(src, local)
        return local

    def _get(self, src: str, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{target.name}{_TMP_MARK}{uuid.uuid4().hex[:8]}")
        try:
            with self._answering("download", src[len(self._root_path) :].lstrip("/")):
                self.fs.get_file(src, str(tmp), **self._transfer_kwargs())
            os.replace(tmp, target)
        except FileNotFoundError as exc:
            key = src[len(self._root_path) :].lstrip("/")
            raise StorageError(f"{self.url(key)} does not exist") from exc
        finally:
            tmp.unlink(missing_ok=True)

    # -- writes (atomic: temporary key, then move) ----------------------------------------------
    def _tmp_path(self, target: str) -> str:
        return f"{target}{_TMP_MARK}{uuid.uuid4().hex[:8]}"

    def _prepare_parent(self, target: str) -> None:
        # Object stores have no folders; s3fs.makedirs would even create a missing bucket.
        if self.is_local:
            self.fs.makedirs(posixpath.dirname(target), exist_ok=True)

    def _discard(self, tmp: str) -> None:
        with contextlib.suppress(Exception):
            self.fs.rm_file(tmp, **deadline(self.fs, 10))

    def write_bytes(self, key: str, data: bytes) -> str:
        """Write an object atomically: readers never see a half-written object."""
        target = self.path(key)
        tmp = self._tmp_path(target)
        self._prepare_parent(target)
        try:
            with self._answering("write", key):
                self.fs.pipe_file(tmp, data, **self._deadline(len(data)))
                self.fs.mv(tmp, target, **self._deadline())
        except BaseException:
            self._discard(tmp)
            raise
        return self.url(key)

    def write_text(self, key: str, text: str) -> str:
        return self.write_bytes(key, text.encode("utf-8"))

    def write_json(self, key: str, obj: Any) -> str:
        return self.write_text(key, json.dumps(obj, indent=2, sort_keys=True, default=str))

    def append_text(self, key: str, text: str) -> None:
        """Append to a log-like object (local lakes append in place; object stores rewrite)."""
        if self.is_local:
            p = self.local_path(key)
            p.parent.mkdir(parents=True, exist_ok=True)
            with p.open("a", encoding="utf-8") as fh:
                fh.write(text)
        else:
            old = self.read_text(key) if self.exists(key) else ""
            self.write_text(key, old + text)

    def upload(self, local: str | os.PathLike[str], key: str) -> list[str]:
        """Upload a file or a folder (recursively) under ``key``; returns the keys written.

        Each file goes to a temporary key and is then moved, so a crash never leaves a
        half-written object under its final name (temporary keys are hidden from :meth:`list`).
        A folder is complete only when its caller says so: ``Workspace.register_model`` writes
        the manifest after the last file, and readers require the manifest. Files are streamed
        in bounded blocks (multipart on S3).
        """
        local = Path(local)
        if not local.exists():
            raise StorageError(f"{local} does not exist")
        written: list[str] = []
        files = sorted(p for p in local.rglob("*") if p.is_file()) if local.is_dir() else [local]
        base = validate_key(key)
        for f in files:
            k = f"{base}/{f.relative_to(local).as_posix()}" if local.is_dir() else base
            target = self.path(k)
            tmp = self._tmp_path(target)
            self._prepare_parent(target)
            try:
                with self._answering("upload", k):
                    self.fs.put_file(str(f), tmp, **self._transfer_kwargs(), **self._deadline(f.stat().st_size))
                    self.fs.mv(tmp, target, **self._deadline())
            except BaseException:
                self._discard(tmp)
                raise
            written.append(k)
        return written

    def delete(self, key: str) -> None:
        """Delete a file or prefix; raises if anything is left (s3fs ignores per-object errors)."""
        p = self.path(key)
        with self._answering("delete", key):
            if not self.fs.exists(p, **self._deadline()):
                return
            self.fs.rm(p, recursive=True, **self._deadline())
            if self.is_local:
                return
            self.fs.invalidate_cache(p)
            left = self.fs.find(p, **self._deadline())
        if left:
            raise StorageError(
                f"could not delete {len(left)} object(s) under {self.url(key)}",
                hint=f"grant the role delete access to {self.url(key)}",
            )

    def walk_files(self, prefix: str) -> Iterator[tuple[str, int]]:
        """(key, size) of every file under a prefix."""
        for k in self.list(prefix):
            with self._answering("lookup", k):
                size = self.fs.size(self.path(k), **self._deadline())
            yield k, int(size or 0)


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def open_url(url: str, mode: str = "rb", **storage_options: Any) -> Any:
    """Open any supported URL or local path with fsspec (used for user-given dataset locations).

    Endpoint and credentials are resolved like the lake's; ``storage_options`` override them.
    """
    resolved = resolve(url, storage_options or None)
    return fsspec.open(resolved.fs_url, mode, **resolved.options)
