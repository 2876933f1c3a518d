"""LangChain's ``ChatOpenAI`` against a real server: it invokes an app and the answer's sources are readable.

ChatOpenAI (Chat Completions API) keeps neither message ``annotations`` nor extra top-level fields such as
``references``; it keeps response headers (``include_response_headers=True``) in ``response_metadata``, so a
non-streamed app answer repeats its annotations in the ``X-Domainrag-Citations`` header.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from openai import OpenAI

pytestmark = pytest.mark.integration

QUESTION = "How long is the CTL-400 warranty?"


def test_langchain_chat_openai_reads_an_apps_citations(server: SimpleNamespace) -> None:
    from langchain_core.messages import AIMessage
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model="app:docs", base_url=server.url, api_key=server.star, max_tokens=8, temperature=0,
                     max_retries=0, include_response_headers=True)
    message = llm.invoke(QUESTION)
    assert isinstance(message, AIMessage) and message.content.strip()
    assert message.response_metadata["finish_reason"] in ("stop", "length")
    citations = json.loads(message.response_metadata["headers"]["x-domainrag-citations"])
    assert citations, message.response_metadata
    for note in citations:
        span = note["url_citation"]
        assert note["type"] == "url_citation" and span["url"].startswith("domainrag://kb/")
        assert span["title"].split(",")[0].endswith(".md")
        assert 0 <= span["start_index"] <= span["end_index"] <= len(message.content)

    # the same request through the openai SDK: the header holds exactly the message's annotations
    sdk = OpenAI(base_url=server.url, api_key=server.star, max_retries=0)
    done = sdk.chat.completions.create(model="app:docs", messages=[{"role": "user", "content": QUESTION}],
                                       max_tokens=8, temperature=0)
    assert done.choices[0].message.content == message.content
    assert [a.model_dump(exclude_none=True) for a in done.choices[0].message.annotations] == citations
    cited = {r["url"] for r in done.model_extra["references"]}
    assert {note["url_citation"]["url"] for note in citations} <= cited


def test_citations_header_is_ascii_json_and_bounded() -> None:
    from domainrag.serving.routes.openai import CITATIONS_HEADER, MAX_CITATIONS_HEADER, citations_header

    note = {"type": "url_citation", "url_citation": {"url": "domainrag://kb/ü.md", "title": "ü.md, page 2",
                                                     "start_index": 0, "end_index": 3}}
    header = citations_header([note])
    assert header[CITATIONS_HEADER].isascii() and json.loads(header[CITATIONS_HEADER]) == [note]
    many = [note] * (2 * MAX_CITATIONS_HEADER // len(header[CITATIONS_HEADER]))
    assert citations_header(many) == {}  # left out rather than a header block clients refuse
