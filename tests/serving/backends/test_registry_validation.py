"""Validating an endpoint or an app's model checks and never converts; deploying prepares once."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from domainrag.errors import DomainRagError, NotFoundError
from domainrag.serving.backends import check_llm, deploy_model, parse_endpoint, registry, validate_endpoint

LLM = "smollm2-135m-instruct"


@pytest.fixture
def no_conversion(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any GGUF assembly/conversion or base-model dequantisation fails the test."""
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("validation must not convert anything")

    monkeypatch.setattr("domainrag.workspace.resolve_llm", forbidden)  # base model → safetensors
    monkeypatch.setattr(registry, "llamacpp_gguf", forbidden)
    monkeypatch.setattr("domainrag.serving.backends.gguf.resolve_gguf", forbidden)
    monkeypatch.setattr("domainrag.serving.backends.gguf.convert_gguf", forbidden)
    monkeypatch.setitem(sys.modules, "llama_cpp", types.ModuleType("llama_cpp"))  # "installed"


def test_validation_checks_without_converting(ws, no_conversion, tmp_path: Path) -> None:
    check_llm(ws, LLM)  # a base model: its package is installed, nothing dequantised
    cfg = parse_endpoint({"type": "llamacpp", "gguf": LLM, "convert": "bf16"})
    validate_endpoint(ws, LLM, cfg)  # the packaged GGUF is there; no conversion
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    validate_endpoint(ws, LLM, parse_endpoint({"type": "llamacpp", "gguf": str(gguf), "convert": "q8_0"}))
    assert not list(tmp_path.glob("*q8_0*"))
    with pytest.raises(DomainRagError, match=r"neither a \.gguf file"):
        validate_endpoint(ws, LLM, parse_endpoint({"type": "llamacpp", "gguf": "no-such-model"}))
    not_gguf = tmp_path / "trunc.gguf"
    not_gguf.write_bytes(b"\x7fELF" + bytes(96))  # a file of another kind, named .gguf
    with pytest.raises(DomainRagError, match=r"trunc\.gguf is not a GGUF file"):
        validate_endpoint(ws, LLM, parse_endpoint({"type": "llamacpp", "gguf": str(not_gguf)}))
    with pytest.raises(NotFoundError, match="neither registered nor a known base model"):
        check_llm(ws, "no-such-model")
    with pytest.raises(DomainRagError, match="is an embedding model, not an LLM"):
        check_llm(ws, "all-minilm-l6-v2")


def test_deploy_converts_once_validation_passed(ws, no_conversion, monkeypatch: pytest.MonkeyPatch) -> None:
    ws.catalog.put("model", "smol-gguf", {"version": 1, "kind": "llm", "format": "gguf", "key": None,
                                          "endpoint": {"type": "llamacpp", "gguf": LLM}})
    prepared: list[str | None] = []
    monkeypatch.setattr(registry, "llamacpp_gguf", lambda cfg: prepared.append(cfg.convert) or "x.gguf")
    record = deploy_model(ws, "smol-gguf", {"type": "llamacpp", "gguf": LLM, "convert": "bf16"})
    assert prepared == ["bf16"] and record["endpoint"]["convert"] == "bf16"
    check_llm(ws, "smol-gguf")  # an app over it: checked again, not converted again
    assert prepared == ["bf16"]
