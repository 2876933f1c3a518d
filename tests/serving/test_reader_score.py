"""Gate signals from real reader logits. The not-found margin (SmolLM2): 0 when the reader's greedy answer is
the not-found text, negative when it prefers another answer, None for a backend without logits. The answer
check: the yes-over-no log-odds of the first reply token, and with the 1.5B reader (when installed) higher for
a passage that states the answer than for one that does not."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from domainrag.serving.reader_score import (
    CHECK_QUESTION,
    FIRST_TOKENS,
    answer_check,
    check_messages,
    not_found_margin,
    single_token_ids,
    supports_reader_score,
    yes_no_log_odds,
)
from domainrag.zoo import BASE_MODELS

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


def test_the_answer_check_is_the_yes_over_no_log_odds_of_the_first_reply_token(api) -> None:
    generator = api.state.apps.get("docs").generator
    check = check_messages(MESSAGES)
    assert check[-1]["content"].startswith(MESSAGES[-1]["content"]) and check[-1]["content"].endswith(CHECK_QUESTION)
    with torch.inference_mode():
        logits = generator.model(input_ids=generator.prompt_ids(check)).logits[0, -1].double()
    tok = generator.tokenizer

    def one_token(words: tuple[str, ...]) -> list[int]:  # words SmolLM2 writes as a single token
        return sorted({ids[0] for w in words if len(ids := tok(w, add_special_tokens=False)["input_ids"]) == 1})

    yes = one_token(("yes", "Yes", " yes", " Yes", "YES", " YES"))
    no = one_token(("no", "No", " no", " No", "NO", " NO"))
    assert len(yes) == 4 and len(no) == 6  # "YES" / " YES" are two tokens there: their "Y" is no yes
    expected = float(torch.logsumexp(logits[yes], 0) - torch.logsumexp(logits[no], 0))
    assert answer_check(generator, MESSAGES) == pytest.approx(expected, abs=1e-3)

    class Remote:
        name = "remote"

    assert answer_check(Remote(), MESSAGES) is None


def test_single_token_ids_leave_out_words_of_several_tokens() -> None:
    vocab = {"yes": [7], "Yes": [8], "YES": [3, 9], " yes": [7]}
    assert single_token_ids(vocab.__getitem__, ("yes", "Yes", "YES", " yes")) == [7, 8]
    assert yes_no_log_odds(np.log(np.array([0.1, 0.3, 0.6])), [1], [0, 2]) == pytest.approx(np.log(0.3 / 0.7))


def test_llamacpp_answer_check_leaves_the_context_usable() -> None:
    pytest.importorskip("llama_cpp", reason="the llamacpp extra is not installed (make install-llamacpp)")
    from domainrag.serving.backends import LlamaCppGenerator, resolve_gguf
    from domainrag.serving.generator import GenerationConfig

    generator = LlamaCppGenerator(str(resolve_gguf("smollm2-135m-instruct")), n_ctx=1024)
    try:
        greedy_cfg = GenerationConfig(max_new_tokens=12, temperature=0, repetition_penalty=1.0)
        fresh = generator.generate(MESSAGES, greedy_cfg)
        first = answer_check(generator, MESSAGES)
        # again with the prompt already in the context: only the tail is evaluated (a different batch split,
        # so the float sums differ a little)
        assert first is not None and first == pytest.approx(answer_check(generator, MESSAGES), abs=0.05)
        assert generator.generate(MESSAGES, greedy_cfg) == fresh
    finally:
        generator.close()


@pytest.mark.skipif(not BASE_MODELS["qwen2.5-coder-1.5b-instruct"].installed,
                    reason="make models-extra installs the 1.5B reader's weight packages")
def test_the_15b_reader_checks_higher_when_the_passage_states_the_answer() -> None:
    from domainrag.serving.backends import LlamaCppGenerator, resolve_gguf

    generator = LlamaCppGenerator(str(resolve_gguf("qwen2.5-coder-1.5b-instruct")), n_ctx=1024)
    question = "How often should the DP-220's diaphragm be replaced?"

    def ask(passage: str) -> float | None:
        user = f"Context:\n[1]\n<<<\n{passage}\n>>>\n\nQuestion: {question}"
        return answer_check(generator, [{"role": "system", "content": "Answer from the passages."},
                                        {"role": "user", "content": user}])

    try:
        states = ask("The DP-220 dosing pump delivers 12 litres per hour. Replace its diaphragm every 4000 hours.")
        lacks = ask("The DP-220 dosing pump delivers 12 litres per hour at 10 bar and weighs 4 kg.")
        assert states is not None and lacks is not None and states > lacks + 1.0
    finally:
        generator.close()
