"""Which backend serves a model: remote models, ``model deploy``/``undeploy``, an app over a remote model end to end."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from domainrag.errors import DomainRagError, NotFoundError
from domainrag.serving.api import create_api
from domainrag.serving.backends import (
    OpenAICompatibleGenerator,
    TransformersEndpoint,
    endpoint_for,
    generator_for,
)
from domainrag.serving.generator import GenerationConfig

pytestmark = pytest.mark.integration

LLM = "smollm2-135m-instruct"
KEY_ENV = "DOMAINRAG_TEST_BACKENDS_KEY"
SHORT = GenerationConfig(max_new_tokens=8, temperature=0)
HELLO = [{"role": "user", "content": "Name one colour."}]


def test_remote_model_registration(client_ws: Any, server: SimpleNamespace, dead_url, remote_endpoint) -> None:
    from domainrag.serving.backends import deploy_model, undeploy_model
    from domainrag.serving.models import create_model

    record = client_ws.model_record("remote-smol")
    assert record["kind"] == "llm" and record["format"] == "remote" and record["key"] is None
    assert record["endpoint"]["base_url"] == server.url and server.star not in json.dumps(record)
    assert isinstance(generator_for(client_ws, "remote-smol"), OpenAICompatibleGenerator)
    with pytest.raises(DomainRagError, match="no stored weights"):
        client_ws.llm_path("remote-smol")
    with pytest.raises(DomainRagError, match="cannot reach"):
        create_model(client_ws, "dead", source="remote",
                     endpoint={"type": "openai", "base_url": dead_url(), "model": LLM})
    assert client_ws.model_record("dead") is None
    with pytest.raises(DomainRagError, match="unknown model kind 'vision'") as exc:
        create_model(client_ws, "v", source="path", path=Path("."), kind="vision")
    assert "llm, embedding, reranker" in (exc.value.hint or "") and client_ws.model_record("v") is None
    with pytest.raises(DomainRagError, match="already exists"):
        create_model(client_ws, "remote-smol", source="remote", endpoint=remote_endpoint(server))
    with pytest.raises(DomainRagError, match="no local weights"):
        deploy_model(client_ws, "remote-smol", {"type": "transformers"})
    with pytest.raises(DomainRagError, match="no local weights"):
        undeploy_model(client_ws, "remote-smol")
    with pytest.raises(NotFoundError, match="not registered") as exc:
        deploy_model(client_ws, LLM, remote_endpoint(server))
    assert "--source remote" in (exc.value.hint or "")


def test_deploy_cli(client_ws: Any, server: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                    dead_url, remote_endpoint, cli_for) -> None:
    from domainrag.serving.models import create_model

    local = tmp_path / "tiny-llm"  # a registered LLM with (stand-in) local weights
    local.mkdir()
    (local / "config.json").write_text('{"model_type": "llama"}')
    create_model(client_ws, "tuned", source="path", path=local)
    root = cli_for(client_ws)
    runner = CliRunner()

    result = runner.invoke(root, ["model", "deploy", "tuned", "--endpoint", json.dumps(remote_endpoint(server))])
    assert result.exit_code == 0, result.output
    assert "OpenAI-compatible server" in result.output and f"${KEY_ENV}" in result.output
    generator = generator_for(client_ws, "tuned")
    assert isinstance(generator, OpenAICompatibleGenerator) and generator.generate(HELLO, SHORT).strip()

    dead = json.dumps({"type": "openai", "base_url": dead_url(), "model": LLM})
    result = runner.invoke(root, ["model", "deploy", "tuned", "--endpoint", dead])
    assert result.exit_code == 1 and "cannot reach" in result.output and "Traceback" not in result.output
    assert client_ws.model_record("tuned")["endpoint"]["base_url"] == server.url  # unchanged on failure

    result = runner.invoke(root, ["model", "undeploy", "tuned"])
    assert result.exit_code == 0, result.output
    assert client_ws.model_record("tuned")["endpoint"] is None
    assert isinstance(endpoint_for(client_ws, "tuned"), TransformersEndpoint)
    result = runner.invoke(root, ["model", "deploy", "tuned", "--endpoint", '{"type": "transformers"}'])
    assert result.exit_code == 0 and "in-process transformers" in result.output  # weights verified, not loaded
    result = runner.invoke(root, ["model", "deploy", "tuned"])  # no --endpoint: backends timed, none loads these
    assert result.exit_code == 1 and "no backend could run model 'tuned'" in result.output
    assert "Traceback" not in result.output


def test_remote_app_end_to_end(
        client_ws: Any, server: SimpleNamespace, server_generator: SimpleNamespace, dead_url) -> None:
    from domainrag.serving.apps import load_app

    rag = load_app(client_ws, "remote-docs")
    assert isinstance(rag.generator, OpenAICompatibleGenerator)
    answer = rag.invoke("How long is the CTL-400 warranty?")
    assert answer.answer.strip() and answer.references
    system, *_, user = server_generator.messages[-1]  # the grounded prompt reached the server's model
    assert system["role"] == "system" and "36-month warranty" in user["content"]

    with TestClient(create_api(client_ws, require_keys=False)) as client:
        body = {"model": "app:remote-docs", "stream": True, "max_tokens": 8,
                "messages": [{"role": "user", "content": "How fast is the DP-220 pump?"}]}
        resp = client.post("/v1/chat/completions", json=body)
        assert resp.status_code == 200, resp.text
        events = [line[6:] for line in resp.text.split("\n") if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        chunks = [json.loads(e) for e in events[:-1]]
        assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks).strip()
        assert chunks[-1]["references"] and "12 litres" in server_generator.messages[-1][-1]["content"]

        plain = client.post("/v1/chat/completions",
                            json={"model": "remote-smol", "messages": HELLO, "max_tokens": 8, "temperature": 0})
        assert plain.status_code == 200, plain.text
        assert plain.json()["choices"][0]["message"]["content"] == "".join(
            OpenAICompatibleGenerator(server.url, LLM, api_key_env=KEY_ENV).stream(HELLO, SHORT))

        client_ws.catalog.put("model", "remote-dead", {  # registered while up; the server went away since
            "version": 1, "kind": "llm", "format": "remote", "key": None, "source": {"type": "remote"},
            "endpoint": {"type": "openai", "base_url": dead_url(), "model": LLM, "timeout": 5}})
        resp = client.post("/v1/chat/completions", json={"model": "remote-dead", "messages": HELLO, "max_tokens": 8})
        assert resp.status_code == 502 and resp.json()["error"]["code"] == "upstream_error"


def test_a_bare_large_gguf_base_model_is_served_by_llamacpp(tmp_path: Path) -> None:
    """The 1.5B reader named directly (an app's model, ``--judge-model``) runs on llama.cpp, not dequantised to
    fp32 by transformers; the 135M default stays in-process."""
    from domainrag.serving.backends import endpoint_for
    from domainrag.serving.backends.config import LlamaCppEndpoint, TransformersEndpoint
    from domainrag.workspace import Workspace
    from domainrag.zoo import BASE_MODELS

    ws = Workspace.open(tmp_path / "ws")
    reader = endpoint_for(ws, "qwen2.5-coder-1.5b-instruct")
    assert isinstance(reader, LlamaCppEndpoint) and reader.gguf == "qwen2.5-coder-1.5b-instruct"
    assert isinstance(endpoint_for(ws, "smollm2-135m-instruct"), TransformersEndpoint)
    if BASE_MODELS["qwen2.5-coder-1.5b-instruct"].installed:
        pytest.importorskip("llama_cpp", reason="the llamacpp extra is not installed")
        from domainrag.serving.backends import generator_for

        generator = generator_for(ws, "qwen2.5-coder-1.5b-instruct")
        assert type(generator).__name__ == "LlamaCppGenerator"
        answer = generator.generate([{"role": "user", "content": "What is 2 + 3? Reply with the number."}],
                                    GenerationConfig(max_new_tokens=4, temperature=0))
        assert "5" in answer, answer
