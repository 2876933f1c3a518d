"""The OpenAI-compatible backend (on the openai SDK) against a real server: our own ``domainrag serve``."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient

from domainrag.serving.api import create_api
from domainrag.serving.backends import BackendError, OpenAICompatibleGenerator, load_generator
from domainrag.serving.generator import GenerationConfig, Generator

pytestmark = pytest.mark.integration

LLM = "smollm2-135m-instruct"
KEY_ENV = "DOMAINRAG_TEST_BACKENDS_KEY"
SHORT = GenerationConfig(max_new_tokens=8, temperature=0)
HELLO = [{"role": "user", "content": "Name one colour."}]


def test_remote_stream_matches_local_model(server: SimpleNamespace) -> None:
    remote = OpenAICompatibleGenerator(server.url, LLM, api_key_env=KEY_ENV)
    assert isinstance(remote, Generator)
    pieces = list(remote.stream(HELLO, SHORT))
    assert len(pieces) >= 2  # streamed, not one blob
    from domainrag.zoo import resolve_llm

    local = load_generator(resolve_llm(LLM), None, LLM).generate(HELLO, SHORT)
    assert local.strip() and "".join(pieces) == local  # greedy: the same text as in-process


def test_remote_cancel_stops_the_server(
        server: SimpleNamespace, server_generator: SimpleNamespace, slots_freed) -> None:
    remote = OpenAICompatibleGenerator(server.url, LLM, api_key_env=KEY_ENV)
    cancel = threading.Event()
    pieces = remote.stream(HELLO, GenerationConfig(max_new_tokens=200, temperature=0), cancel)
    assert next(pieces)
    cancel.set()
    assert list(pieces) == []  # nothing after cancel: the connection is closed
    server_cancel = server_generator.cancels[-1]
    assert server_cancel is not None and server_cancel.wait(20)  # the disconnect reached the model
    slots_freed(server)

    it = remote.stream(HELLO, GenerationConfig(max_new_tokens=200, temperature=0))
    assert next(it)
    it.close()  # closing the iterator cancels the same way
    assert server_generator.cancels[-1].wait(20)
    slots_freed(server)


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


def test_remote_errors_are_clear(server: SimpleNamespace, monkeypatch: pytest.MonkeyPatch, dead_url) -> None:
    dead = OpenAICompatibleGenerator(dead_url(), LLM, timeout=5)
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


def test_remote_passes_stop_seed_and_penalties_to_the_server(
        server: SimpleNamespace, server_generator: SimpleNamespace) -> None:
    """The server gets ``stop``, ``seed`` and the penalties; it cuts the text at the stop itself."""
    days = [{"role": "user", "content": "List the days of the week."}]
    remote = OpenAICompatibleGenerator(server.url, LLM, api_key_env=KEY_ENV)
    full = remote.generate(days, GenerationConfig(max_new_tokens=30, temperature=0))
    assert "Monday" in full
    config = GenerationConfig(max_new_tokens=30, temperature=0, stop=("Monday",), seed=5, presence_penalty=0.25,
                              frequency_penalty=0.5)
    assert remote.generate(days, config) == full[:full.index("Monday")]
    sent = server_generator.configs[-1]
    assert sent.stop == ("Monday",) and sent.seed == 5
    assert (sent.presence_penalty, sent.frequency_penalty) == (0.25, 0.5)
