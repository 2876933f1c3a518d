"""An app answer's references as OpenAI message ``annotations``, where OpenAI-compatible clients keep them.

OpenAI's chat API puts sources in ``choices[0].message.annotations`` as ``url_citation`` objects, each with
the span of the answer it supports; OpenAI-compatible clients (the ``openai`` SDK) keep that field and may drop
unknown top-level ones (our ``references``, still sent for our own clients). LangChain's ChatOpenAI drops both;
it reads a non-streamed answer's annotations from a response header (see serving.routes.openai).
Each ``[n]`` marker of a cited reference gets one annotation spanning the marker; an answer that cites
nothing rests on every passage it was given, so each reference then spans the whole answer.
"""

from __future__ import annotations

from typing import Any

from domainrag.data.prompts import citation_markers


def citation_title(ref: dict[str, Any]) -> str:
    """The document, with its page and section where known: ``manual.pdf, page 4, Safety``."""
    parts = [str(ref.get("document") or ref.get("title") or "")]
    if ref.get("page") is not None:
        parts.append(f"page {ref['page']}")
    if ref.get("section"):
        parts.append(str(ref["section"]))
    return ", ".join(p for p in parts if p)


def _annotation(ref: dict[str, Any], start: int, end: int) -> dict[str, Any]:
    return {"type": "url_citation", "url_citation": {"url": ref["url"], "title": citation_title(ref),
                                                     "start_index": start, "end_index": end}}


def url_citations(text: str, references: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI ``url_citation`` annotations of ``text`` for ``references``, in the order of the text."""
    by_number = {ref["citation"]: ref for ref in references}
    found = [(by_number[n], start, end) for n, start, end in citation_markers(text) if n in by_number]
    if not found:  # nothing cited: the answer as a whole rests on every reference
        return [_annotation(ref, 0, len(text)) for ref in references]
    return [_annotation(ref, start, end) for ref, start, end in found]
