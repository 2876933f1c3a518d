"""Storage options: environment resolution, precedence, OSS mapping and credential redaction."""

from __future__ import annotations

import json
import logging

import pytest

from domainrag.errors import StorageError
from domainrag.storage import options as opts
from domainrag.storage.lake import Lake
from domainrag.storage.options import (
    OSS_S3_CONFIG,
    merge_options,
    parse_storage_options,
    redact,
    resolve,
    scrub,
)

AWS = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "s3cr3t-value",
       "AWS_SESSION_TOKEN": "tok-123", "AWS_ENDPOINT_URL": "http://minio:9000", "AWS_REGION": "eu-west-1"}
OSS = {"OSS_ENDPOINT": "oss-cn-hangzhou.aliyuncs.com", "OSS_ACCESS_KEY_ID": "LTAIEXAMPLE",
       "OSS_ACCESS_KEY_SECRET": "oss-s3cr3t", "OSS_SECURITY_TOKEN": "sts-tok"}


def test_aws_environment_is_resolved() -> None:
    r = resolve("s3://bucket/prefix", env=AWS)
    assert (r.backend, r.fs_url) == ("s3fs", "s3://bucket/prefix")
    assert r.options == {"endpoint_url": "http://minio:9000", "key": "AKIAEXAMPLE", "secret": "s3cr3t-value",
                         "token": "tok-123", "client_kwargs": {"region_name": "eu-west-1"}}
    assert r.endpoint == "http://minio:9000"


def test_service_specific_endpoint_wins_and_us_east_1_is_not_forced() -> None:
    env = {"AWS_ENDPOINT_URL": "http://a", "AWS_ENDPOINT_URL_S3": "http://b",
           "AWS_DEFAULT_REGION": "us-east-1"}
    assert resolve("s3a://b/p", env=env).options == {"endpoint_url": "http://b"}


def test_profile_used_only_without_keys() -> None:
    assert resolve("s3://b", env={"AWS_PROFILE": "dev"}).options == {"profile": "dev"}
    both = resolve("s3://b", env={**AWS, "AWS_PROFILE": "dev"}).options
    assert "profile" not in both and both["key"] == "AKIAEXAMPLE"


def test_half_set_keys_are_ignored() -> None:
    assert resolve("s3://b", env={"AWS_ACCESS_KEY_ID": "only-id"}).options == {}


def test_precedence_env_then_env_json_then_explicit() -> None:
    env = {**AWS, "DOMAINRAG_STORAGE_OPTIONS": json.dumps({"endpoint_url": "http://from-json",
                                                           "config_kwargs": {"connect_timeout": 3}})}
    r = resolve("s3://b/p", {"secret": "explicit", "config_kwargs": {"read_timeout": 9}}, env=env)
    assert r.options["endpoint_url"] == "http://from-json"
    assert r.options["secret"] == "explicit"
    assert r.options["key"] == "AKIAEXAMPLE"
    assert r.options["config_kwargs"] == {"connect_timeout": 3, "read_timeout": 9}  # merged, not replaced
    assert resolve("s3://b/p", '{"anon": true}', env={}).options == {"anon": True}  # JSON text accepted


def test_local_urls_take_no_cloud_options() -> None:
    r = resolve("/data/lake", env={**AWS, "DOMAINRAG_STORAGE_OPTIONS": '{"endpoint_url": "x"}'})
    assert (r.backend, r.options, r.is_remote) == ("local", {}, False)


def test_oss_without_ossfs_maps_to_s3fs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(opts, "have_ossfs", lambda: False)
    r = resolve("oss://my-bucket/lake", env={**OSS, **AWS})
    assert (r.backend, r.scheme, r.fs_url) == ("s3fs", "oss", "s3://my-bucket/lake")
    assert r.options == {"endpoint_url": "https://oss-cn-hangzhou.aliyuncs.com", "key": "LTAIEXAMPLE",
                         "secret": "oss-s3cr3t", "token": "sts-tok", "config_kwargs": OSS_S3_CONFIG}
    assert r.options["config_kwargs"]["s3"] == {"addressing_style": "virtual"}  # OSS refuses path style
    # an explicit endpoint with scheme is kept, and overrides merge into the OSS client config
    r2 = resolve("oss://b/p", {"config_kwargs": {"signature_version": "s3v4"}},
                 env={"OSS_ENDPOINT": "http://127.0.0.1:9000"})
    assert r2.options["endpoint_url"] == "http://127.0.0.1:9000"
    assert r2.options["config_kwargs"]["signature_version"] == "s3v4"
    assert r2.options["config_kwargs"]["s3"] == {"addressing_style": "virtual"}


def test_oss_with_ossfs_uses_native_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(opts, "have_ossfs", lambda: True)
    r = resolve("oss://my-bucket/lake", env=OSS)
    assert (r.backend, r.fs_url) == ("ossfs", "oss://my-bucket/lake")
    assert r.options == {"endpoint": "https://oss-cn-hangzhou.aliyuncs.com", "key": "LTAIEXAMPLE",
                         "secret": "oss-s3cr3t", "token": "sts-tok"}


def test_lake_on_oss_uses_s3fs_but_keeps_oss_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(opts, "have_ossfs", lambda: False)
    for k, v in OSS.items():
        monkeypatch.setenv(k, v)
    lake = Lake("oss://my-bucket/lake")  # no network: s3fs connects lazily
    assert type(lake.fs).__name__ == "S3FileSystem"
    assert lake.fs.endpoint_url == "https://oss-cn-hangzhou.aliyuncs.com"
    assert lake.fs.config_kwargs["signature_version"] == "s3"
    assert lake.url("models/m/1") == "oss://my-bucket/lake/models/m/1"
    assert lake.path("models/m/1") == "my-bucket/lake/models/m/1"


def test_lake_resolves_environment_when_options_are_none(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in AWS.items():
        monkeypatch.setenv(k, v)
    lake = Lake("s3://bucket/prefix")
    assert lake.fs.endpoint_url == "http://minio:9000"
    assert lake.fs.key == "AKIAEXAMPLE"
    explicit = Lake("s3://bucket/prefix", {"endpoint_url": "http://other:9000"})
    assert explicit.fs.endpoint_url == "http://other:9000" and explicit.fs.key == "AKIAEXAMPLE"


def test_redact_hides_every_credential() -> None:
    options = {"endpoint_url": "http://minio:9000", "key": "AKIAEXAMPLE", "secret": "s3cr3t-value",
               "token": "tok", "profile": "dev", "anon": False,
               "client_kwargs": {"aws_secret_access_key": "nested-secret", "aws_session_token": "t2",
                                 "region_name": "eu-west-1"},
               "config_kwargs": {"retries": {"max_attempts": 1}}, "password": "pw", "username": "u"}
    red = redact(options)
    text = json.dumps(red)
    for secret in ("AKIAEXAMPLE", "s3cr3t-value", "nested-secret", "pw", "tok"):
        assert f'"{secret}"' not in text
    assert red["endpoint_url"] == "http://minio:9000" and red["profile"] == "dev" and red["anon"] is False
    assert red["client_kwargs"]["region_name"] == "eu-west-1"
    assert red["config_kwargs"] == {"retries": {"max_attempts": 1}}
    assert options["secret"] == "s3cr3t-value"  # the input is not modified


def test_lake_repr_and_logging_never_show_secrets(monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    for k, v in AWS.items():
        monkeypatch.setenv(k, v)
    lake = Lake("s3://bucket/prefix")
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("test").info("lake %r %s", lake, lake.resolved.describe())
    assert "s3cr3t-value" not in caplog.text and "tok-123" not in caplog.text
    assert "http://minio:9000" in caplog.text


def test_scrub_removes_secret_values_from_messages() -> None:
    msg = "failed for key AKIAEXAMPLE with secret s3cr3t-value and token tok-123 at http://minio:9000"
    assert scrub(msg, resolve("s3://b", env=AWS).options) == (
        "failed for key AKIAEXAMPLE with secret *** and token *** at http://minio:9000")
    assert scrub("domainrag-preflight", {"key": "a", "secret": "a"}) == "domainrag-preflight"


def test_parse_storage_options_errors_do_not_echo_input() -> None:
    assert parse_storage_options(None) == {} and parse_storage_options('{"a": 1}') == {"a": 1}
    with pytest.raises(StorageError) as info:
        parse_storage_options('{"secret": "do-not-echo"')
    assert "do-not-echo" not in str(info.value)
    with pytest.raises(StorageError, match="JSON object"):
        parse_storage_options('["x"]')


def test_merge_options_is_deep_and_pure() -> None:
    base = {"a": {"b": 1, "c": 2}, "d": 1}
    assert merge_options(base, {"a": {"c": 3}, "e": 4}) == {"a": {"b": 1, "c": 3}, "d": 1, "e": 4}
    assert base == {"a": {"b": 1, "c": 2}, "d": 1}
