"""One answer made ready to stream: retrieval done (for apps), messages built, token counting settled.

Both the app completion route and the OpenAI chat route prepare their answer here, then stream it with
:mod:`domainrag.serving.streaming`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

from domainrag.data.prompts import extract_citations
from domainrag.index.base import SearchHit
from domainrag.serving.budget import check_plain_fits, fit_rag_prompt
from domainrag.serving.generator import GenerationConfig, Generator, stream_reporting_usage
from domainrag.serving.http_errors import ApiError
from domainrag.serving.rag import RagApp, RagEvent, reference
from domainrag.serving.sessions import condense_query
from domainrag.serving.streaming import Events
from domainrag.serving.tracing import current_trace


@dataclass
class PreparedAnswer:
    """Everything needed to stream one answer: its events, the generator, token counts, limits."""

    events: Events
    generator: Generator | None
    prompt_tokens: int
    max_new_tokens: int
    n_hits: int = 0
    reported: dict[str, int] = field(default_factory=dict)  # a remote server's own counts
    stopped: bool = False  # a stop sequence ended the text (known once the stream has ended)
    hits: list[SearchHit] = field(default_factory=list)  # the passages the model is given (apps)
    index: str = ""  # the app's index (the passages' links name it)

    def usage(self, text: str) -> dict[str, int]:
        """OpenAI's ``usage`` for the answer ``text``: the backend's own counts, else the local tokenizer's.

        Also counted on the request's trace (``/metrics``, the access log): call it once per answer.
        """
        if self.reported.get("completion_tokens") is not None:
            prompt, completion = self.reported.get("prompt_tokens", 0), self.reported["completion_tokens"]
        else:
            prompt = self.prompt_tokens
            completion = _count_tokens(self.generator, text) if self.generator is not None and prompt else 0
        if (trace := current_trace()) is not None:
            trace.usage(prompt, completion)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def passages(self, text: str) -> list[dict[str, Any]]:
        """Every passage the model was given, as a reference, marked ``cited`` where the answer ``text`` cites it."""
        cited, _ = extract_citations(text, self.n_hits)
        return [{**reference(i, hit, index=self.index), "cited": i in cited} for i, hit in enumerate(self.hits, 1)]

    def finish_reason(self, usage: dict[str, int]) -> str:
        """OpenAI's ``finish_reason``: "stop" at a stop sequence or the model's end, "length" at ``max_tokens``."""
        if self.stopped:
            return "stop"
        return "length" if usage["completion_tokens"] >= self.max_new_tokens else "stop"


def _count_tokens(generator: Generator, text: str) -> int:
    """Completion tokens by the local tokenizer; 0 for backends without one (remote servers)."""
    tokenizer = getattr(generator, "tokenizer", None)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"]) if tokenizer is not None else 0


def _trace_model(generator: Generator | None) -> None:
    """Name the request's model on its trace (the ``model`` label of its token metrics)."""
    if (trace := current_trace()) is not None:
        trace.model = getattr(generator, "name", None) or "none"


def prepare_rag(
    rag: RagApp, question: str, history: list[dict[str, str]], top_k: int | None, filters: dict[str, Any] | None,
    config: GenerationConfig,
) -> PreparedAnswer:
    """Retrieve (with the follow-up condensed against history) and build the answer stream."""
    _trace_model(rag.generator)
    try:
        hits: list[SearchHit] = rag.retrieve(condense_query(question, history), top_k, filters)
    except ValueError as exc:  # empty query, unsupported filter field
        raise ApiError(400, str(exc)) from exc
    prompt_tokens = 0
    if hits:  # without passages the app answers its not-found text and never calls the model
        hits, history, prompt_tokens = fit_rag_prompt(rag, question, hits, history, config.max_new_tokens)
    reported: dict[str, int] = {}

    def events(cancel: threading.Event) -> Iterator[RagEvent]:
        stream = rag.stream_with_hits(question, hits, history=history, config=config, cancel=cancel, usage=reported)
        with closing(stream) as rag_events:
            for event in rag_events:
                answer.stopped = answer.stopped or event.stopped
                yield event

    answer = PreparedAnswer(events, rag.generator, prompt_tokens, config.max_new_tokens, len(hits), reported,
                            hits=hits, index=rag.retriever.config.index)
    return answer


def prepare_plain(generator: Generator, messages: list[dict[str, str]], config: GenerationConfig) -> PreparedAnswer:
    """A plain chat answer (no retrieval) from ``generator``."""
    _trace_model(generator)
    try:
        prompt_tokens = check_plain_fits(generator, messages, config.max_new_tokens)
    except ApiError:
        raise
    except Exception as exc:  # the chat template rejects the message sequence
        raise ApiError(400, f"messages cannot be formatted for this model: {exc}", param="messages") from exc
    reported: dict[str, int] = {}

    def events(cancel: threading.Event) -> Iterator[RagEvent]:
        with closing(stream_reporting_usage(generator, messages, config, cancel, reported)) as pieces:
            for piece in pieces:
                yield RagEvent("token", piece)
            answer.stopped = pieces.hit

    answer = PreparedAnswer(events, generator, prompt_tokens, config.max_new_tokens, reported=reported)
    return answer
