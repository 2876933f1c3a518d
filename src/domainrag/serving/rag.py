"""A RAG application: retrieval config + model + generation defaults, invoked with streaming.

The answer is grounded: the model sees only numbered retrieved passages under a strict system
prompt; if retrieval finds nothing, or the app's answerability gate (:mod:`.gate`) judges that the
passages hold no answer, the app answers its not-found text with the closest references without
calling the model; citations pointing at passages it was never given are dropped; references returned
are the passages the answer cites (all passages given, if it cites none). The last event carries the
gate's decision and the answer's per-sentence ``grounding`` (:mod:`.grounding`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote, urlsplit

from pydantic import BaseModel, ConfigDict, Field

from domainrag.data.prompts import (
    DEFAULT_SYSTEM_PROMPT,
    DEFAULT_TEMPERATURE,
    NOT_FOUND_ANSWER,
    ContextPassage,
    build_messages,
    extract_citations,
    strip_invalid_citations,
)
from domainrag.errors import DomainRagError
from domainrag.index.base import SearchHit
from domainrag.retrieval.retriever import Retriever
from domainrag.serving.gate import Gate, GateDecision
from domainrag.serving.generator import GenerationConfig, Generator, stream_reporting_usage
from domainrag.serving.grounding import grounding
from domainrag.serving.tracing import retrieval_timer

MAX_QUERY_CHARS = 8000
"""Longest question an app accepts: far beyond any real question, well below what would swamp the prompt."""
ABSTAIN_REFERENCES = 3
"""Closest passages returned with a gated not-found answer, so the user can look for themselves."""


class GenerationSettings(BaseModel):
    """Generation defaults stored with an app."""

    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(DEFAULT_TEMPERATURE, ge=0, le=2)
    max_new_tokens: int = Field(160, ge=1, le=4096)
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    not_found_answer: str = NOT_FOUND_ANSWER

    def to_generation_config(self) -> GenerationConfig:
        return GenerationConfig(temperature=self.temperature, max_new_tokens=self.max_new_tokens)


@dataclass
class RagEvent:
    """One streamed event: a text delta, or the final references (``stopped``: a stop sequence ended the answer)."""

    type: Literal["token", "references"]
    text: str = ""
    references: list[dict[str, Any]] = field(default_factory=list)
    stopped: bool = False
    grounding: dict[str, Any] | None = None  # on the references event: see serving.grounding


@dataclass
class RagAnswer:
    answer: str
    references: list[dict[str, Any]]
    passages: list[SearchHit]
    grounding: dict[str, Any] | None = None


def source_url(hit: SearchHit, index: str) -> str:
    """A link to a passage's document: its source when that is a URI (``https://``, ``s3://`` …), else
    ``domainrag://<index>/<doc_id>``: a local path or ``file://`` URI is no link another machine can follow."""
    source = str(hit.metadata.get("source") or "")
    scheme = urlsplit(source).scheme
    if len(scheme) > 1 and scheme != "file":  # one letter is a Windows drive, not a scheme
        return source
    return f"domainrag://{quote(index, safe='')}/{quote(hit.doc_id, safe='')}"


def reference(i: int, hit: SearchHit, excerpt_chars: int = 300, index: str = "") -> dict[str, Any]:
    """What an answer cites, in the form a person can check: document, page and section where known, a link, and
    the full passage (``text``) besides its ``excerpt``."""
    ref = {"citation": i, "chunk_id": hit.chunk_id, "document": hit.doc_id, "title": hit.title,
           "score": round(hit.score, 6), "ranks": hit.ranks, "excerpt": hit.text[:excerpt_chars],
           "text": hit.text, "url": source_url(hit, index)}
    for key in ("page", "section"):
        if hit.metadata.get(key) is not None:
            ref[key] = hit.metadata[key]
    return ref


def passage_source(hit: SearchHit) -> str:
    """The source line the model sees for a passage: the document, plus its page where the format has pages."""
    page = hit.metadata.get("page")
    return f"{hit.doc_id}, page {page}" if page is not None else hit.doc_id


class QueryError(DomainRagError, ValueError):
    """A question an app cannot take (the API answers 400, the CLI prints it)."""


def check_query(query: str) -> None:
    """Raise :class:`QueryError` for an empty or overlong question."""
    if not query.strip():
        raise QueryError("the question is empty", hint="ask a question, e.g. --query \"What does the CTL-400 weigh?\"")
    if len(query) > MAX_QUERY_CHARS:
        raise QueryError(f"the question is {len(query)} characters long; an app accepts at most {MAX_QUERY_CHARS}",
                         hint="ask the question itself, not a document; to search a document, ingest it")


class RagApp:
    def __init__(
        self, name: str, retriever: Retriever, generator: Generator | None, generation: GenerationSettings,
        gate: Gate | None = None,
    ) -> None:
        self.name = name
        self.retriever = retriever
        self.generator = generator
        self.generation = generation
        self.gate = gate  # None: no gate at all (answers never claim grounded)

    def retrieve(self, query: str, top_k: int | None = None, filters: dict[str, Any] | None = None) -> list[SearchHit]:
        """The passages for ``query``; within a served request each stage is timed on its trace (``/metrics``)."""
        check_query(query)
        on_stage = retrieval_timer()
        start = time.perf_counter()
        hits = self.retriever.run(query, top_k=top_k, filters=filters, on_stage=on_stage)
        if on_stage is not None:
            on_stage("total", time.perf_counter() - start)
        return hits

    def check_gate(self, query: str, hits: list[SearchHit],
                   history: Sequence[dict[str, str]] = ()) -> GateDecision | None:
        """The gate's decision on ``hits`` (None without a gate)."""
        if self.gate is None:
            return None
        return self.gate.check(query, hits, lambda: self.messages(query, hits, history))

    def _abstain(self, hits: list[SearchHit], gate: dict[str, Any] | None, reason: str) -> Iterator[RagEvent]:
        """The not-found answer with the closest passages as references; the model is not called."""
        index = self.retriever.config.index
        refs = [reference(i, h, index=index) for i, h in enumerate(hits[:ABSTAIN_REFERENCES], start=1)]
        yield RagEvent("token", self.generation.not_found_answer)
        yield RagEvent("references", references=refs, grounding={
            "grounded": None, "abstained": True, "reason": reason, "gate": gate, "sentences": [], "flagged": 0})

    def stream(
        self,
        query: str,
        top_k: int | None = None,
        filters: dict[str, Any] | None = None,
        *,
        history: Sequence[dict[str, str]] = (),
    ) -> Iterator[RagEvent]:
        """Retrieve, then stream the grounded answer; the last event carries the references."""
        yield from self.stream_with_hits(query, self.retrieve(query, top_k, filters), history=history)

    def messages(
        self, query: str, hits: list[SearchHit], history: Sequence[dict[str, str]] = ()
    ) -> list[dict[str, str]]:
        """The chat messages the model sees: app system prompt, prior turns, fenced passages + question."""
        passages = [ContextPassage(h.text, passage_source(h)) for h in hits]
        return build_messages(query, passages, self.generation.system_prompt, history)

    def stream_with_hits(
        self,
        query: str,
        hits: list[SearchHit],
        *,
        history: Sequence[dict[str, str]] = (),
        config: GenerationConfig | None = None,
        cancel: threading.Event | None = None,
        usage: dict[str, int] | None = None,
    ) -> Iterator[RagEvent]:
        """Stream the answer to ``query`` from ``hits``; ``history`` is prior user/assistant turns,
        ``config`` overrides the app's generation defaults and setting ``cancel`` stops generation.
        A remote backend stores its server-side token counts in ``usage``."""
        if not hits:
            yield from self._abstain(hits, None, "retrieval returned no passage")
            return
        decision = self.check_gate(query, hits, history)
        gate = decision.to_dict() if decision is not None else None
        if decision is not None and not decision.answerable:
            yield from self._abstain(hits, gate, f"answerability gate: {decision.reason}")
            return
        if self.generator is None:
            raise RuntimeError(f"app '{self.name}' has no generator loaded")
        messages = self.messages(query, hits, history)
        text = ""
        # closing() so that closing this iterator (a client left) closes the model's stream at once, not at GC
        stream = stream_reporting_usage(
            self.generator, messages, config or self.generation.to_generation_config(), cancel, usage)
        with closing(stream) as pieces:
            for piece in pieces:
                text += piece
                yield RagEvent("token", piece)
        cited, _ = extract_citations(text, len(hits))
        chosen = cited or list(range(1, len(hits) + 1))
        index = self.retriever.config.index
        answer_grounding = grounding(strip_invalid_citations(text, len(hits)), [h.text for h in hits], gate=gate,
                                     not_found=self.generation.not_found_answer)
        yield RagEvent("references", references=[reference(i, hits[i - 1], index=index) for i in chosen],
                       stopped=pieces.hit, grounding=answer_grounding)

    def invoke(self, query: str, top_k: int | None = None, filters: dict[str, Any] | None = None) -> RagAnswer:
        return self.answer_from(query, self.retrieve(query, top_k, filters))

    def answer_from(self, query: str, hits: list[SearchHit]) -> RagAnswer:
        """The whole answer to ``query`` from ``hits`` (the gate, the model, grounding), not streamed."""
        text, refs, answer_grounding = "", [], None
        for event in self.stream_with_hits(query, hits):
            if event.type == "token":
                text += event.text
            else:
                refs, answer_grounding = event.references, event.grounding
        return RagAnswer(strip_invalid_citations(text, len(hits)), refs, hits, answer_grounding)
