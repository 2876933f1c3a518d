"""Legacy ``/v1/completions`` through the official ``openai`` SDK (``client.completions.create``), against a plain
model and an app, streamed and not, with the real tiny SmolLM2 model."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from fastapi.testclient import TestClient

pytestmark = pytest.mark.integration

LLM = "smollm2-135m-instruct"
DAYS = "List the days of the week."
QUESTION = "How long is the CTL-400 warranty?"


@pytest.fixture(scope="module")
def sdk(client: TestClient) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{client.base_url}/v1", api_key="unused", http_client=client, max_retries=0)


def _streamed(sdk: openai.OpenAI, **request: Any) -> tuple[str, list[Any]]:
    chunks = list(sdk.completions.create(stream=True, **request))
    assert all(c.object == "text_completion" for c in chunks)
    return "".join(c.choices[0].text for c in chunks if c.choices), chunks


def test_a_prompt_is_answered_as_the_same_chat_message(sdk: openai.OpenAI) -> None:
    """The prompt reaches the model as one user message: the text is the chat route's, token for token."""
    done = sdk.completions.create(model=LLM, prompt=DAYS, max_tokens=20, temperature=0)
    chat = sdk.chat.completions.create(model=LLM, messages=[{"role": "user", "content": DAYS}], max_tokens=20,
                                       temperature=0)
    (choice,) = done.choices
    assert done.object == "text_completion" and done.id.startswith("cmpl-") and done.model == LLM
    assert choice.text == chat.choices[0].message.content and "Monday" in choice.text
    assert choice.finish_reason == "length" and choice.index == 0
    assert done.usage.completion_tokens == chat.usage.completion_tokens > 0
    assert done.usage.prompt_tokens == chat.usage.prompt_tokens > 0

    default = sdk.completions.create(model=LLM, prompt=DAYS, temperature=0)  # OpenAI's default: 16 tokens
    assert default.choices[0].finish_reason == "length"
    assert choice.text.startswith(default.choices[0].text) and len(default.choices[0].text) < len(choice.text)

    text, chunks = _streamed(sdk, model=LLM, prompt=DAYS, max_tokens=20, temperature=0,
                             stream_options={"include_usage": True})
    assert text == choice.text and len([c for c in chunks if c.choices and c.choices[0].text]) > 1
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].choices[0].finish_reason == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == done.usage.completion_tokens


def test_stop_and_sampling(sdk: openai.OpenAI) -> None:
    full = sdk.completions.create(model=LLM, prompt=DAYS, max_tokens=20, temperature=0).choices[0].text
    before = full[:full.index("Monday")]
    for stream in (False, True):
        if stream:
            text, chunks = _streamed(sdk, model=LLM, prompt=DAYS, max_tokens=20, temperature=0,
                                     stop=["Friday", "Monday"])
            finish = next(c.choices[0].finish_reason for c in chunks if c.choices[0].finish_reason)
        else:
            done = sdk.completions.create(model=LLM, prompt=DAYS, max_tokens=20, temperature=0, stop="Monday")
            text, finish = done.choices[0].text, done.choices[0].finish_reason
        assert text == before and finish == "stop", stream
    seeded = [sdk.completions.create(model=LLM, prompt=DAYS, max_tokens=10, temperature=1.0, seed=5).choices[0].text
              for _ in range(2)]
    assert seeded[0] == seeded[1]


def test_an_app_answers_the_prompt_with_its_sources(sdk: openai.OpenAI) -> None:
    done = sdk.completions.create(model="app:docs", prompt=QUESTION, max_tokens=6, temperature=0)
    chat = sdk.chat.completions.create(model="app:docs", messages=[{"role": "user", "content": QUESTION}],
                                       max_tokens=6, temperature=0)
    assert done.choices[0].text == chat.choices[0].message.content and done.choices[0].text.strip()
    refs = done.model_extra["references"]
    assert refs and {r["url"] for r in refs} == {r["url"] for r in chat.model_extra["references"]}
    assert any(r["document"] == "warranty.md" for r in refs)
    assert done.usage == chat.usage

    text, chunks = _streamed(sdk, model="app:docs", prompt=QUESTION, max_tokens=6, temperature=0)
    assert text == done.choices[0].text
    final = chunks[-1]
    assert final.choices[0].finish_reason == done.choices[0].finish_reason and final.model_extra["references"]


@pytest.mark.parametrize(("more", "param"), [
    ({"echo": True}, "echo"), ({"best_of": 2}, "best_of"), ({"logprobs": 1}, "logprobs"),
    ({"suffix": "end"}, "suffix"), ({"n": 2}, "n"), ({"prompt": ["one", "two"]}, "prompt"),
    ({"prompt": [[1, 2, 3]]}, "prompt"), ({"stop": ["a"] * 5}, "stop"), ({"max_tokens": 0}, "max_tokens"),
])
def test_what_cannot_be_honoured_is_400(client: TestClient, openai_error, more: dict[str, Any], param: str) -> None:
    for model in (LLM, "app:docs"):
        resp = client.post("/v1/completions", json={"model": model, "prompt": DAYS, "max_tokens": 2, **more})
        assert openai_error(resp, 400)["param"] == param, resp.text


def test_unknown_model_is_404(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        sdk.completions.create(model="app:nope", prompt=DAYS)
    with pytest.raises(openai.NotFoundError):
        sdk.completions.create(model="no-such-model", prompt=DAYS)
