"""Fixtures for storage tests: a clean storage environment, a real S3 server (versitygw), and a real
fault proxy (Toxiproxy) in front of it.

The S3 fixtures start ``scripts/services/s3.sh`` once per session (building the server needs Go
the first time), create a fresh bucket for the run, and stop the server only if they started it.
Credentials are set with monkeypatch and never printed.

Fault injection: ``toxiproxy`` (session, from ``tests/conftest.py``) builds the proxy once through
``scripts/services/toxiproxy.sh`` (Go) and starts it on a free loopback port; ``faulty_s3`` puts a
proxy in front of the test S3 server and points the environment at it, with short timeouts so a
fault ends in seconds. Faults are Toxiproxy "toxics" (latency, a stalled connection, a reset, a
connection cut mid-transfer) or a disabled proxy (a dead endpoint).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import s3fs

REPO = Path(__file__).resolve().parents[2]
S3_SH = REPO / "scripts" / "services" / "s3.sh"
_ENV_PREFIXES = ("AWS_", "OSS_")
_ENV_NAMES = ("DOMAINRAG_STORAGE_OPTIONS", "DOMAINRAG_LAKE", "DOMAINRAG_HOME", "DOMAINRAG_CACHE")


@pytest.fixture(autouse=True)
def clean_storage_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No ambient cloud credentials, profiles or instance metadata: every test states what it uses."""
    for name in list(os.environ):
        if name.startswith(_ENV_PREFIXES) or name in _ENV_NAMES:
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("DOMAINRAG_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def dead_endpoint() -> str:
    """URL of a local port nothing listens on (bound, then released): an unreachable endpoint."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
def make_adapter() -> Callable[[Path], Path]:
    """``make_adapter(folder)``: fill ``folder`` with a tiny fake LoRA adapter and return it."""

    def make(folder: Path) -> Path:
        (folder / "sub").mkdir(parents=True)
        (folder / "adapter_config.json").write_text('{"r": 8, "lora_alpha": 16}')
        (folder / "adapter_model.safetensors").write_bytes(os.urandom(64 * 1024))
        (folder / "tokenizer.json").write_text('{"version": "1.0"}')
        (folder / "sub" / "extra.txt").write_text("extra")
        return folder

    return make


@dataclass(frozen=True)
class S3Server:
    url: str
    key: str
    secret: str = field(repr=False)
    region: str
    bucket: str
    binary: Path

    def root_fs(self) -> s3fs.S3FileSystem:

        return s3fs.S3FileSystem(endpoint_url=self.url, key=self.key, secret=self.secret,
                                 skip_instance_cache=True)


def _services_cache() -> Path:
    default = Path.home() / ".cache" / "domainrag" / "services"
    return Path(os.environ.get("DOMAINRAG_SERVICES_CACHE") or default)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """The shared local S3 server with a fresh bucket for this test run."""
    binary = _services_cache() / "bin" / "versitygw"
    if shutil.which("go") is None and not binary.exists():
        pytest.skip("Go toolchain not found: it is needed (once) to build the versitygw S3 server "
                    "for the S3 integration tests; install Go >= 1.25")
    started = False
    if subprocess.run([str(S3_SH), "status"], capture_output=True, text=True).returncode != 0:
        proc = subprocess.run([str(S3_SH), "start"], capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            pytest.fail(f"scripts/services/s3.sh start failed:\n{proc.stderr[-4000:]}")
        started = True
    env_text = subprocess.run([str(S3_SH), "env"], capture_output=True, text=True, check=True).stdout
    env = dict(line.removeprefix("export ").split("=", 1) for line in env_text.splitlines() if "=" in line)
    server = S3Server(url=env["AWS_ENDPOINT_URL"], key=env["AWS_ACCESS_KEY_ID"],
                      secret=env["AWS_SECRET_ACCESS_KEY"],
                      region=env.get("AWS_DEFAULT_REGION", "us-east-1"),
                      bucket=f"domainrag-test-{uuid.uuid4().hex[:10]}", binary=binary)
    fs = server.root_fs()
    fs.mkdir(server.bucket)
    try:
        yield server
    finally:
        try:
            fs.rm(server.bucket, recursive=True)
        finally:
            if started:
                subprocess.run([str(S3_SH), "stop"], capture_output=True, text=True, timeout=60)


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> S3Server:
    """Environment pointing at the test server with the root credentials (as ``s3.sh env`` does)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.url)
    monkeypatch.setenv("AWS_DEFAULT_REGION", s3_server.region)
    monkeypatch.setenv("DOMAINRAG_HOME", str(tmp_path / "ws"))
    return s3_server


@dataclass(frozen=True)
class Reader:
    key: str
    secret: str = field(repr=False)
    prefix_url: str


@pytest.fixture(scope="session")
def s3_reader(s3_server: S3Server) -> Iterator[Reader]:
    """A user with role ``user`` that a bucket policy allows to read (not write) the test bucket."""
    key, secret = f"reader{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    admin = [str(s3_server.binary), "admin", "--access", s3_server.key, "--secret", s3_server.secret,
             "--endpoint-url", s3_server.url]
    proc = subprocess.run([*admin, "create-user", "--access", key, "--secret", secret, "--role", "user"],
                          capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        pytest.fail(f"versitygw admin create-user failed (rc {proc.returncode}): {proc.stderr[-1000:]}")
    bucket = s3_server.bucket
    policy = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": [key]},
        "Action": ["s3:GetObject", "s3:ListBucket", "s3:GetBucketLocation"],
        "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]}]}
    fs = s3_server.root_fs()
    fs.call_s3("put_bucket_policy", Bucket=bucket, Policy=json.dumps(policy))
    fs.pipe_file(f"{bucket}/readonly/doc.txt", b"read me")
    try:
        yield Reader(key, secret, f"s3://{bucket}/readonly")
    finally:
        subprocess.run([*admin, "delete-user", "--access", key], capture_output=True, text=True, timeout=60)


# -- fault injection ------------------------------------------------------------------------------
# Short limits for the fault tests: the wall-clock deadline of a lake call and the socket timeouts.
LAKE_DEADLINE_S = 4
FAST_CLIENT = {"config_kwargs": {"connect_timeout": 2, "read_timeout": 3}}



@dataclass(frozen=True)
class FaultyS3:
    """The test S3 server seen through a proxy: ``url`` is the proxy's endpoint."""

    server: S3Server
    proxy: str
    url: str
    prefix: str  # s3://bucket/<fresh prefix>


@pytest.fixture
def faulty_s3(
    s3_server: S3Server, toxiproxy: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[FaultyS3]:
    upstream = s3_server.url.removeprefix("http://")
    name, listen = toxiproxy.proxy(upstream)
    url = f"http://{listen}"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret)
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    monkeypatch.setenv("AWS_DEFAULT_REGION", s3_server.region)
    monkeypatch.setenv("DOMAINRAG_HOME", str(tmp_path / "ws"))
    monkeypatch.setenv("DOMAINRAG_LAKE_TIMEOUT", str(LAKE_DEADLINE_S))
    monkeypatch.setenv("DOMAINRAG_STORAGE_OPTIONS", json.dumps(FAST_CLIENT))
    try:
        yield FaultyS3(s3_server, name, url, f"s3://{s3_server.bucket}/faults-{uuid.uuid4().hex[:8]}")
    finally:
        httpx.delete(f"{toxiproxy.api}/proxies/{name}")
