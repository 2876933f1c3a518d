"""Continuous batching of the real SmolLM2: concurrent requests share decode steps and answer as if alone.

Equality with a solo ``generate`` is asserted in float32: in bfloat16 a batch's matrix shapes (padding, rows)
change the rounding, so a near tie may resolve differently after some tokens, as in any batching engine.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from domainrag.serving.generator import GenerationConfig

pytestmark = pytest.mark.integration

LLM = "smollm2-135m-instruct"
QUESTIONS = ["Name one colour.", "List the days of the week.", "What does a dosing pump do?", "Why is the sky blue?"]
GREEDY = GenerationConfig(temperature=0, max_new_tokens=16)


@pytest.fixture(scope="module")
def fp32() -> Any:
    from domainrag.serving.backends import load_generator
    from domainrag.zoo import resolve_llm

    return load_generator(str(resolve_llm(LLM)), None, "smol-fp32", "float32")


def _alone(generator: Any, messages: list[dict[str, str]], cfg: GenerationConfig) -> str:
    """transformers' own ``generate`` on this prompt alone: the answer batching must not change."""
    ids = generator.prompt_ids(messages)
    with torch.inference_mode():
        out = generator.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=cfg.max_new_tokens,
                                       do_sample=False, repetition_penalty=cfg.repetition_penalty,
                                       pad_token_id=generator.tokenizer.eos_token_id)
    return generator.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def _wait_until(condition: Any, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _run_together(generator: Any, jobs: list[Any]) -> None:
    """Start ``jobs`` (threads' targets) while the model is held, so every request is queued before the first step."""
    threads = [threading.Thread(target=job) for job in jobs]
    with generator._lock:
        for thread in threads:
            thread.start()
        _wait_until(lambda: generator.batch._waiting.qsize() >= len(jobs) - 1)
        time.sleep(0.2)
    for thread in threads:
        thread.join(timeout=300)


def test_concurrent_requests_share_a_batch_and_answer_as_alone(fp32: Any) -> None:
    generator = fp32
    prompts = [[{"role": "user", "content": q}] for q in QUESTIONS]
    sizes: list[int] = []
    answers: list[str | None] = [None] * len(prompts)

    def job(i: int) -> Any:
        return lambda: answers.__setitem__(i, generator.generate(prompts[i], GREEDY))

    generator.batch.on_step = sizes.append
    try:
        _run_together(generator, [job(i) for i in range(len(prompts))])
    finally:
        generator.batch.on_step = None
    assert max(sizes) == len(prompts)  # every request decoded in the same steps
    assert answers == [_alone(generator, p, GREEDY) for p in prompts]
    assert all(answers) and len(set(answers)) == len(answers)
    assert generator.batch.active == 0


def test_prefill_budget_sets_how_many_prompts_join_between_two_steps(fp32: Any) -> None:
    generator = fp32
    prompts = [[{"role": "user", "content": q}] for q in QUESTIONS[:3]]
    answers: list[str | None] = [None] * len(prompts)

    def job(i: int) -> Any:
        return lambda: answers.__setitem__(i, generator.generate(prompts[i], GREEDY))

    runs: dict[int, list[int]] = {}
    default = generator.batch.prefill_budget
    for budget in (1, 10_000):  # one prompt per step, then every waiting prompt before the first step
        sizes: list[int] = []
        generator.batch.on_step, generator.batch.prefill_budget = sizes.append, budget
        try:
            _run_together(generator, [job(i) for i in range(len(prompts))])
        finally:
            generator.batch.on_step, generator.batch.prefill_budget = None, default
        runs[budget] = sizes
        assert answers == [_alone(generator, p, GREEDY) for p in prompts]
    assert runs[1][:3] == [1, 2, 3]
    assert runs[10_000][0] == 3


def test_cancelling_one_request_frees_its_place_and_spares_the_others(fp32: Any) -> None:
    generator = fp32
    story = [{"role": "user", "content": "Write a very long story about a dragon and a castle."}]
    days = [{"role": "user", "content": QUESTIONS[1]}]
    long = GenerationConfig(temperature=0, max_new_tokens=300)
    sizes: list[int] = []
    kept: list[str] = []
    cancelled: list[str] = []

    def abandon() -> None:
        stream = generator.stream(story, long)
        cancelled.append(next(stream))
        _wait_until(lambda: len(sizes) >= 3)  # decoded alongside the other request for a few steps
        stream.close()  # the client went away

    generator.batch.on_step = sizes.append
    try:
        _run_together(generator, [abandon, lambda: kept.append(generator.generate(days, GREEDY))])
    finally:
        generator.batch.on_step = None
    assert max(sizes) == 2 and len(sizes) < 100  # shared steps; the story stopped long before 300 tokens
    assert kept == [_alone(generator, days, GREEDY)]
    assert cancelled and generator.batch.active == 0


def test_deploy_times_the_backends_and_records_the_choice(client_ws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from domainrag import hardware
    from domainrag.serving.backends import choice, deploy_model, endpoint_for
    from domainrag.serving.models import create_model
    from domainrag.zoo import resolve_llm

    create_model(client_ws, "smol-timed", source="path", path=Path(resolve_llm(LLM)))
    record = deploy_model(client_ws, "smol-timed", None)
    figures = record["backend_measurement"]
    rows = {row["backend"]: row for row in figures["candidates"]}
    assert ("transformers bfloat16" in rows) == hardware.native_bf16() == figures["native_bf16"]
    timed = [row for row in rows.values() if "total_s" in row]
    assert all(0 < row["ttft_s"] <= row["total_s"] for row in timed)
    fastest = min(timed, key=lambda row: row["total_s"])
    assert figures["chosen"] == fastest["backend"]
    assert endpoint_for(client_ws, "smol-timed").model_dump() == fastest["endpoint"]
    # --endpoint overrides, and without native bf16 the bf16 candidate is never tried
    assert deploy_model(client_ws, "smol-timed", {"type": "transformers", "dtype": "float32"})["endpoint"]["dtype"] \
        == "float32"
    monkeypatch.setattr(hardware, "native_bf16", lambda: False)
    llm = client_ws.resolve_llm("smol-timed")
    assert [choice.label(c) for c in choice.candidates(client_ws, llm)] == ["transformers float32"]


def test_the_running_cache_grows_in_place_and_answers_stay_those_of_generate(fp32: Any,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """With 3 free positions the running cache outgrows its buffers every few steps while requests join and leave:
    the answers are still ``generate``'s, and a decode step writes into the buffer instead of copying it."""
    from domainrag.serving.backends import batching

    monkeypatch.setattr(batching, "SPARE", 3)
    generator = fp32
    prompts = [[{"role": "user", "content": q}] for q in QUESTIONS]
    configs = [GenerationConfig(temperature=0, max_new_tokens=n) for n in (5, 16, 9, 16)]  # leave at different steps
    answers: list[str | None] = [None] * len(prompts)
    buffers: list[int] = []

    def job(i: int) -> Any:
        return lambda: answers.__setitem__(i, generator.generate(prompts[i], configs[i]))

    def step(size: int) -> None:
        layer = generator.batch._cache.layers[0]
        buffers.append(layer.keys.untyped_storage().data_ptr())

    generator.batch.on_step = step
    try:
        _run_together(generator, [job(i) for i in range(len(prompts))])
    finally:
        generator.batch.on_step = None
    assert answers == [_alone(generator, p, c) for p, c in zip(prompts, configs, strict=True)]
    assert 1 < len(set(buffers)) < len(buffers)  # reallocated now and then, written in place in between
