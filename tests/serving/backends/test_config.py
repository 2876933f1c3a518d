"""Endpoint configs: the discriminated union and its clear errors."""

from __future__ import annotations

import pytest

from domainrag.errors import DomainRagError
from domainrag.serving.backends import TransformersEndpoint, parse_endpoint

LLM = "smollm2-135m-instruct"


def test_endpoint_config_union() -> None:
    assert isinstance(parse_endpoint(None), TransformersEndpoint)
    cfg = parse_endpoint('{"type": "openai", "base_url": "http://h:8000/v1/", "model": "m"}')
    assert cfg.base_url == "http://h:8000/v1" and cfg.api_key_env == "DOMAINRAG_REMOTE_API_KEY"
    assert parse_endpoint({"type": "llamacpp", "gguf": LLM}).n_ctx == 2048
    with pytest.raises(DomainRagError, match="never store API keys"):
        parse_endpoint({"type": "openai", "base_url": "http://h/v1", "model": "m", "api_key": "sk-x"})
    with pytest.raises(DomainRagError, match="invalid endpoint"):
        parse_endpoint({"type": "vllm"})
    for url in ("ftp://h/v1", "foo://x", "http://", "http://:8000/v1"):  # a short one said "at least 8 characters"
        with pytest.raises(DomainRagError, match="http:// or https:// URL with a host"):
            parse_endpoint({"type": "openai", "base_url": url, "model": "m"})
