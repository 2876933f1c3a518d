"""Storage options for a URL: which fsspec backend opens it, and with which endpoint and credentials.

Resolution order (later wins, nested dicts such as ``config_kwargs`` are merged key by key):

1. the environment, read at resolution time so a changed variable is picked up:

   * ``s3://`` / ``s3a://``: ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` → ``endpoint_url``;
     ``AWS_ACCESS_KEY_ID`` + ``AWS_SECRET_ACCESS_KEY`` (+ ``AWS_SESSION_TOKEN``) → ``key``/``secret``/
     ``token``; otherwise ``AWS_PROFILE`` → ``profile``; ``AWS_REGION``/``AWS_DEFAULT_REGION`` →
     ``client_kwargs.region_name`` except for ``us-east-1`` (s3fs turns a client region into a bucket
     ``LocationConstraint``, which S3 and S3-compatible servers reject for us-east-1, and botocore
     already reads the variable itself).
   * ``oss://``: ``OSS_ENDPOINT``, ``OSS_ACCESS_KEY_ID``, ``OSS_ACCESS_KEY_SECRET`` and
     ``OSS_SECURITY_TOKEN``/``OSS_SESSION_TOKEN``. With the ``ossfs`` extra installed these go to
     ``ossfs`` (the native OSS API). Without it we do not fail: OSS speaks the S3 API, so the URL is
     opened with s3fs against the OSS endpoint, using the client settings Alibaba documents for AWS
     SDKs (virtual-hosted addressing, which OSS requires, and V2 ``s3`` signing, because OSS rejects
     the chunked uploads that botocore's V4 signing sends). Keeping s3fs as the fallback means one
     well-tested client for both clouds and no extra dependency.
2. ``DOMAINRAG_STORAGE_OPTIONS``: a JSON object applied to every remote URL.
3. explicit options (the ``--storage-options`` JSON or ``Lake(root, storage_options)``).

Resolved options hold secrets: log or store only :func:`redact`'s output.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fsspec import AbstractFileSystem
from fsspec.asyn import AsyncFileSystem
from fsspec.core import url_to_fs

from domainrag.errors import StorageError

SUPPORTED_SCHEMES = ("file", "local", "s3", "s3a", "oss")
ENV_OPTIONS = "DOMAINRAG_STORAGE_OPTIONS"

# Option names (at any nesting level) whose values are credentials. Access key IDs identify rather
# than authenticate, so they are masked in option dumps but not scrubbed out of error messages.
_SECRET_WORDS = ("secret", "token", "password", "credential", "passwd")
_SECRET_NAMES = frozenset({"sas_token", "account_key"})
_IDENTITY_NAMES = frozenset({"key", "aws_access_key_id", "access_key", "access_key_id", "accesskeyid",
                             "username"})
REDACTED = "***"

# Client settings Alibaba documents for using AWS SDKs with OSS (see the module docstring).
OSS_S3_CONFIG: dict[str, Any] = {
    "signature_version": "s3",
    "s3": {"addressing_style": "virtual"},
    "request_checksum_calculation": "when_required",
    "response_checksum_validation": "when_required",
}


# Every object-store client gets bounded waits and retries unless the user sets their own: a
# silent endpoint must end in an error naming it, never in a hang. Applied when the filesystem is
# opened (not in :func:`resolve`, which reports only what the user configured).
S3_CLIENT_DEFAULTS: dict[str, Any] = {
    "config_kwargs": {"connect_timeout": 5, "read_timeout": 20, "retries": {"max_attempts": 2, "mode": "standard"}},
}
# s3fs's own retry loop runs on top of botocore's attempts (its default is 5, with back-off).
S3FS_RETRIES = 2
# Every lake call also gets a wall-clock deadline: retries multiply the socket timeouts, and a
# request with a body can wait forever for a "100 Continue" that a stalled endpoint never sends
# (aiohttp's read timeout does not cover that wait). This many seconds, plus one second per MiB
# written; ``DOMAINRAG_LAKE_TIMEOUT`` overrides the base.
WRITE_DEADLINE_S = 60.0
ENV_WRITE_DEADLINE = "DOMAINRAG_LAKE_TIMEOUT"


def deadline(fs: AbstractFileSystem, seconds: float) -> dict[str, float]:
    """Keyword arguments that bound one blocking call of ``fs`` to ``seconds``: fsspec's wrapper of an async
    backend (s3fs) takes ``timeout=``; local files need none."""
    return {"timeout": seconds} if isinstance(fs, AsyncFileSystem) else {}


def write_deadline(nbytes: int = 0, env: Mapping[str, str] | None = None) -> float:
    """Seconds a write of ``nbytes`` may take before it counts as hung."""
    env = os.environ if env is None else env
    raw = env.get(ENV_WRITE_DEADLINE)
    try:
        base = float(raw) if raw else WRITE_DEADLINE_S
    except ValueError as exc:
        raise StorageError(f"{ENV_WRITE_DEADLINE}={raw!r} is not a number of seconds") from exc
    return base + nbytes / 2**20


def split_scheme(url: str) -> str:
    """Return the URL scheme ('file' for plain paths) and refuse unsupported ones."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else "file"
    if scheme not in SUPPORTED_SCHEMES:
        raise StorageError(
            f"unsupported storage scheme '{scheme}://' in {url!r}",
            hint="use a local path, file://, s3://bucket/prefix or oss://bucket/prefix",
        )
    if scheme in ("s3", "s3a", "oss") and not url.split("://", 1)[1].strip("/"):
        raise StorageError(f"{url!r} names no bucket", hint=f"use {scheme}://bucket/prefix")
    return scheme


@dataclass(frozen=True)
class ResolvedStorage:
    """How to open one URL: ``fs_url`` and ``options`` go to fsspec; ``url`` is what users see."""

    url: str
    scheme: str
    backend: str  # "local" | "s3fs" | "ossfs"
    fs_url: str
    options: dict[str, Any]

    @property
    def is_remote(self) -> bool:
        return self.backend != "local"

    @property
    def endpoint(self) -> str:
        """Endpoint in use, for messages (never contains credentials)."""
        if self.backend == "local":
            return "local filesystem"
        endpoint = self.options.get("endpoint_url") or self.options.get("endpoint")
        return str(endpoint or "the default AWS endpoint")

    def describe(self) -> dict[str, Any]:
        """Backend and redacted options, safe to print."""
        return {"backend": self.backend, "endpoint": self.endpoint, "options": redact(self.options)}


def have_ossfs() -> bool:
    """Whether the native OSS filesystem (``pip install domainrag[oss]``) is importable."""
    return importlib.util.find_spec("ossfs") is not None


def resolve(
    url: str,
    overrides: Mapping[str, Any] | str | None = None,
    env: Mapping[str, str] | None = None,
) -> ResolvedStorage:
    """Resolve backend, fsspec URL and storage options for ``url`` (see the module docstring)."""
    scheme = split_scheme(url)
    env = os.environ if env is None else env
    explicit = parse_storage_options(overrides) if isinstance(overrides, str) else dict(overrides or {})
    if scheme in ("file", "local"):
        return ResolvedStorage(url, scheme, "local", url, explicit)
    layers: list[Mapping[str, Any]] = []
    if scheme in ("s3", "s3a"):
        backend, fs_url = "s3fs", url
        layers.append(_aws_env(env))
    elif have_ossfs():
        backend, fs_url = "ossfs", url
        layers.append(_oss_env_native(env))
    else:
        backend, fs_url = "s3fs", "s3://" + url.split("://", 1)[1]
        layers.append(_oss_env_s3(env))
    if env.get(ENV_OPTIONS):
        layers.append(parse_storage_options(env[ENV_OPTIONS], source=ENV_OPTIONS))
    layers.append(explicit)
    options: dict[str, Any] = {}
    for layer in layers:
        options = merge_options(options, layer)
    return ResolvedStorage(url, scheme, backend, fs_url, options)


def storage_options(url: str, overrides: Mapping[str, Any] | str | None = None) -> dict[str, Any]:
    """Just the resolved options of :func:`resolve` (for callers that pass them to fsspec themselves)."""
    return resolve(url, overrides).options


def open_fs(
    url: str, overrides: Mapping[str, Any] | str | None = None, **fs_kwargs: Any
) -> tuple[AbstractFileSystem, str, ResolvedStorage]:
    """Filesystem, backend path and resolution for a URL; ``fs_kwargs`` are extra constructor options."""
    resolved = resolve(url, overrides)
    kwargs = {**resolved.options, **fs_kwargs} if resolved.is_remote else dict(resolved.options)
    if resolved.backend == "s3fs":
        kwargs = merge_options(S3_CLIENT_DEFAULTS, kwargs)
    fs, path = url_to_fs(resolved.fs_url, **kwargs)
    if resolved.backend == "s3fs":
        fs.retries = S3FS_RETRIES
    return fs, path, resolved


def parse_storage_options(
    text: str | Mapping[str, Any] | None, *, source: str = "--storage-options"
) -> dict[str, Any]:
    """Parse the ``--storage-options`` JSON object; errors never echo the text (it may hold secrets)."""
    if text is None or text == "":
        return {}
    if isinstance(text, Mapping):
        return dict(text)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StorageError(
            f"{source} is not valid JSON ({exc.msg}: column {exc.colno})",
            hint='pass a JSON object, e.g. {"endpoint_url": "http://127.0.0.1:19000"}',
        ) from None
    if not isinstance(value, dict):
        raise StorageError(f"{source} must be a JSON object, not {type(value).__name__}")
    return value


def merge_options(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated with ``override``; nested dicts merge recursively instead of being replaced."""
    out = copy.deepcopy(dict(base))
    for k, v in override.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = merge_options(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def is_secret_option(name: str) -> bool:
    """Whether an option's value authenticates (secret key, token, password)."""
    lowered = name.lower()
    return lowered in _SECRET_NAMES or any(w in lowered for w in _SECRET_WORDS)


def is_credential_option(name: str) -> bool:
    """Secrets plus access key IDs: everything :func:`redact` masks."""
    return is_secret_option(name) or name.lower() in _IDENTITY_NAMES


def redact(options: Mapping[str, Any]) -> dict[str, Any]:
    """Copy of ``options`` with every credential value replaced by ``***`` (safe to log or store)."""
    out: dict[str, Any] = {}
    for k, v in options.items():
        if is_credential_option(str(k)) and v not in (None, ""):
            out[k] = REDACTED
        elif isinstance(v, Mapping):
            out[k] = redact(v)
        else:
            out[k] = v
    return out


def secret_values(options: Mapping[str, Any]) -> list[str]:
    """All secret values in ``options`` (to scrub them from messages)."""
    found: list[str] = []
    for k, v in options.items():
        if isinstance(v, Mapping):
            found += secret_values(v)
        elif is_secret_option(str(k)) and isinstance(v, str) and v:
            found.append(v)
    return found


def scrub(text: str, options: Mapping[str, Any]) -> str:
    """``text`` with any secret value from ``options`` replaced by ``***``."""
    for value in sorted(secret_values(options), key=len, reverse=True):
        if len(value) >= 4:  # replacing a 1-3 character "secret" would only mangle the message
            text = text.replace(value, REDACTED)
    return text


# -- environment → options ----------------------------------------------------------------------------
def _aws_env(env: Mapping[str, str]) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint:
        opts["endpoint_url"] = endpoint
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        opts["key"] = env["AWS_ACCESS_KEY_ID"]
        opts["secret"] = env["AWS_SECRET_ACCESS_KEY"]
        if env.get("AWS_SESSION_TOKEN"):
            opts["token"] = env["AWS_SESSION_TOKEN"]
    elif env.get("AWS_PROFILE"):
        opts["profile"] = env["AWS_PROFILE"]
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if region and region != "us-east-1":
        opts["client_kwargs"] = {"region_name": region}
    return opts


def _oss_endpoint(env: Mapping[str, str]) -> str | None:
    endpoint = env.get("OSS_ENDPOINT")
    if endpoint and "://" not in endpoint:
        endpoint = f"https://{endpoint}"
    return endpoint


def _oss_token(env: Mapping[str, str]) -> str | None:
    return env.get("OSS_SECURITY_TOKEN") or env.get("OSS_SESSION_TOKEN")


def _oss_env(env: Mapping[str, str], opts: dict[str, Any], endpoint_key: str) -> dict[str, Any]:
    """``opts`` plus the ``OSS_*`` endpoint (under ``endpoint_key``) and key/secret/token."""
    if endpoint := _oss_endpoint(env):
        opts[endpoint_key] = endpoint
    if env.get("OSS_ACCESS_KEY_ID") and env.get("OSS_ACCESS_KEY_SECRET"):
        opts["key"], opts["secret"] = env["OSS_ACCESS_KEY_ID"], env["OSS_ACCESS_KEY_SECRET"]
        if token := _oss_token(env):
            opts["token"] = token
    return opts


def _oss_env_native(env: Mapping[str, str]) -> dict[str, Any]:
    """Options for ``ossfs.OSSFileSystem`` (endpoint/key/secret/token)."""
    return _oss_env(env, {}, "endpoint")


def _oss_env_s3(env: Mapping[str, str]) -> dict[str, Any]:
    """Options for s3fs against OSS's S3-compatible API (no ``ossfs`` installed)."""
    return _oss_env(env, {"config_kwargs": copy.deepcopy(OSS_S3_CONFIG)}, "endpoint_url")
