"""The reader's not-found margin from the real SmolLM2 logits: 0 when the reader's greedy answer is the
not-found text, negative when it prefers another answer, None for a backend without logits."""

from __future__ import annotations

import pytest
import torch

from domainrag.serving.reader_score import FIRST_TOKENS, not_found_margin, supports_reader_score

pytestmark = pytest.mark.integration

MESSAGES = [{"role": "system", "content": "Answer from the passage."},
            {"role": "user", "content": "Passage: The DP-220 pump delivers 12 litres per hour.\n\n"
                                        "Question: How much does the DP-220 deliver?"}]


def test_the_margin_is_zero_for_the_greedy_answer_and_negative_for_another(api) -> None:
    generator = api.state.apps.get("docs").generator  # the shared SmolLM2 of the serving fixtures
    assert supports_reader_score(generator)
    ids = generator.prompt_ids(MESSAGES)
    with torch.inference_mode():
        out = generator.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                       max_new_tokens=FIRST_TOKENS, repetition_penalty=1.0)
    greedy_ids = out[0, ids.shape[1]:].tolist()
    greedy = generator.tokenizer.decode(greedy_ids)
    assert generator.tokenizer(greedy, add_special_tokens=False)["input_ids"][:FIRST_TOKENS] == greedy_ids
    assert not_found_margin(generator, MESSAGES, greedy) == pytest.approx(0.0, abs=1e-6)
    other = not_found_margin(generator, MESSAGES, "Purple elephants sing opera.")
    assert other < -1.0


def test_a_backend_without_logits_gives_no_margin() -> None:
    class Remote:
        name = "remote"

    assert not supports_reader_score(Remote()) and not_found_margin(Remote(), MESSAGES, "Not found.") is None


def test_llamacpp_gives_the_same_margin_shape_and_keeps_its_prefix_cache() -> None:
    """On llama.cpp (SmolLM2's GGUF): 0 for its own greedy start, clearly negative for another answer; a
    generation after the scoring answers as from a fresh context."""
    pytest.importorskip("llama_cpp", reason="the llamacpp extra is not installed (make install-llamacpp)")
    from domainrag.serving.backends import LlamaCppGenerator, resolve_gguf
    from domainrag.serving.generator import GenerationConfig

    generator = LlamaCppGenerator(str(resolve_gguf("smollm2-135m-instruct")), n_ctx=1024)
    try:
        assert supports_reader_score(generator)
        greedy_cfg = GenerationConfig(max_new_tokens=12, temperature=0, repetition_penalty=1.0)
        fresh = generator.generate(MESSAGES, greedy_cfg)
        assert not_found_margin(generator, MESSAGES, fresh) == pytest.approx(0.0, abs=1e-3)
        assert not_found_margin(generator, MESSAGES, "Purple elephants sing opera.") < -1.0
        assert generator.generate(MESSAGES, greedy_cfg) == fresh  # the context is left usable
        generator.llm.reset()
        assert not_found_margin(generator, MESSAGES, "Purple elephants sing opera.") < -1.0  # from empty
    finally:
        generator.close()
