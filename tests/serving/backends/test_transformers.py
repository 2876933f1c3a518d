"""The in-process transformers backend: cancellation, dtype choice, a bfloat16 deployment."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from domainrag.errors import DomainRagError
from domainrag.serving.backends import generator_for, parse_endpoint
from domainrag.serving.backends.config import DEFAULT_PREFILL_BUDGET
from domainrag.serving.generator import GenerationConfig

pytestmark = pytest.mark.integration

LLM = "smollm2-135m-instruct"
KEY_ENV = "DOMAINRAG_TEST_BACKENDS_KEY"
SHORT = GenerationConfig(max_new_tokens=8, temperature=0)
HELLO = [{"role": "user", "content": "Name one colour."}]


def test_generator_stops_when_cancelled(api) -> None:
    generator = api.state.apps.get("docs").generator
    from domainrag.serving.generator import GenerationConfig

    messages = [{"role": "user", "content": "Write a very long story about a dragon and a castle."}]
    cfg = GenerationConfig(temperature=0, max_new_tokens=300)
    cancel = threading.Event()
    pieces = []
    for piece in generator.stream(messages, cfg, cancel):
        pieces.append(piece)
        if len(pieces) == 2:
            cancel.set()
    assert len(pieces) < 8
    # closing the iterator early also stops generate() and frees the model
    it = generator.stream(messages, cfg)
    next(it)
    it.close()
    _wait_for_empty_batch(generator)


def _wait_for_empty_batch(generator: Any) -> None:
    """The generator's running batch empties (a request left it at its next step)."""
    deadline = time.monotonic() + 30
    while generator.batch.active and time.monotonic() < deadline:
        time.sleep(0.01)
    assert generator.batch.active == 0


def test_transformers_bfloat16_deploy(client_ws: Any) -> None:
    """``{"type": "transformers", "dtype": "bfloat16"}`` is stored and loads the weights in bfloat16."""
    import torch

    from domainrag.serving.backends import deploy_model
    from domainrag.serving.models import create_model
    from domainrag.zoo import resolve_llm

    create_model(client_ws, "smol-bf16", source="path", path=Path(resolve_llm(LLM)))
    record = deploy_model(client_ws, "smol-bf16", {"type": "transformers", "dtype": "bfloat16"})
    assert record["endpoint"] == {"type": "transformers", "dtype": "bfloat16", "max_batch": 64,
                                  "prefill_budget": DEFAULT_PREFILL_BUDGET}
    generator = generator_for(client_ws, "smol-bf16")
    assert next(generator.model.parameters()).dtype == torch.bfloat16
    assert generator.generate(HELLO, SHORT).strip()
    default = {"type": "transformers"}
    assert deploy_model(client_ws, "smol-bf16", default)["endpoint"] is None  # the default is not stored
    with pytest.raises(DomainRagError, match="dtype"):
        parse_endpoint({"type": "transformers", "dtype": "int3"})


def test_transformers_auto_dtype_follows_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default endpoint dtype is ``auto``: bfloat16 where the CPU multiplies bf16 natively, else float32."""
    from domainrag import hardware
    from domainrag.serving.backends import resolve_dtype

    assert parse_endpoint(None).dtype == "auto"
    assert resolve_dtype("float32") == "float32" and resolve_dtype("bfloat16") == "bfloat16"
    monkeypatch.setattr(hardware, "native_bf16", lambda: True)
    assert resolve_dtype("auto") == "bfloat16"
    monkeypatch.setattr(hardware, "native_bf16", lambda: False)
    assert resolve_dtype("auto") == "float32"


def test_transformers_honours_stop_seed_and_penalties(api) -> None:
    """The real SmolLM2: ``stop`` cuts the streamed text (the model stops too), a seed repeats a sampled text,
    a frequency penalty changes a greedy one."""
    generator = api.state.apps.get("docs").generator
    days = [{"role": "user", "content": "List the days of the week."}]
    full = generator.generate(days, GenerationConfig(temperature=0, max_new_tokens=30))
    assert "Monday" in full
    stream = generator.stream(days, GenerationConfig(temperature=0, max_new_tokens=30, stop=("Monday", "Friday")))
    pieces = list(stream)
    assert "".join(pieces) == full[:full.index("Monday")] and stream.hit
    _wait_for_empty_batch(generator)  # meeting the stop took the request out of the batch

    def sampled(seed: int) -> str:
        return generator.generate(days, GenerationConfig(temperature=1.0, top_p=1.0, max_new_tokens=12, seed=seed))

    first = sampled(1)
    assert sampled(1) == first
    assert any(sampled(seed) != first for seed in (2, 3, 4))
    repeat = [{"role": "user", "content": "Say the word apple twenty times."}]
    greedy = GenerationConfig(temperature=0, max_new_tokens=30)
    assert generator.generate(repeat, GenerationConfig(temperature=0, max_new_tokens=30, frequency_penalty=2.0)) \
        != generator.generate(repeat, greedy)
