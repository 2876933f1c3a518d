"""Faithfulness by an LLM judge behind any OpenAI-compatible ``/chat/completions`` endpoint.

The judge counts the factual claims of an answer and how many the given passages support;
faithfulness = supported / claims. The prompt is a module constant and is stored in every report,
so a number can always be traced to the exact instruction that produced it. The API key is read
from ``DOMAINRAG_JUDGE_API_KEY`` and never written anywhere.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any

import httpx

from domainrag.errors import DomainRagError

API_KEY_ENV = "DOMAINRAG_JUDGE_API_KEY"

JUDGE_PROMPT = """You check whether an ANSWER is supported by CONTEXT passages. Use only the passages, not your own \
knowledge.
1. List the factual claims the answer makes (a refusal or "I don't know" makes no claim).
2. For each claim decide whether the passages state or directly imply it.
Reply with JSON only, no prose: {{"claims": <number of claims>, "supported": <number supported>, \
"unsupported": [<each unsupported claim, quoted>]}}

QUESTION: {question}

CONTEXT:
{context}

ANSWER: {answer}"""


@dataclass(frozen=True)
class JudgeVerdict:
    score: float
    claims: int
    supported: int
    unsupported: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"score": self.score, "claims": self.claims, "supported": self.supported,
                "unsupported": self.unsupported}


class JudgeError(DomainRagError):
    """The judge endpoint failed or replied with something that is not a verdict."""


def parse_verdict(content: str) -> JudgeVerdict:
    """Read the JSON verdict out of a judge reply (tolerates code fences and prose around it)."""
    m = re.search(r"\{.*\}", content, re.DOTALL)
    if not m:
        raise JudgeError(f"judge reply holds no JSON object: {content[:200]!r}")
    try:
        data = json.loads(m.group(0))
        claims, supported = int(data["claims"]), int(data["supported"])
    except (ValueError, KeyError, TypeError) as exc:
        raise JudgeError(f"judge reply is not a verdict ({exc}): {content[:200]!r}") from exc
    if claims < 0 or supported < 0 or supported > claims:
        raise JudgeError(f"judge verdict is inconsistent: {supported} supported of {claims} claims")
    unsupported = [str(u) for u in data.get("unsupported") or []]
    return JudgeVerdict(1.0 if claims == 0 else supported / claims, claims, supported, unsupported)


class OpenAIJudge:
    """Calls ``<url>/chat/completions`` (``url`` may also be the full endpoint) at temperature 0."""

    def __init__(
        self, url: str, model: str, *, api_key: str | None = None, timeout: float = 60.0,
        client: httpx.Client | None = None, prompt: str = JUDGE_PROMPT,
    ) -> None:
        base = url.rstrip("/")
        self.url = base if base.endswith("/chat/completions") else base + "/chat/completions"
        self.model = model
        self.prompt = prompt
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.client = client or httpx.Client(timeout=timeout)
        self.headers = headers

    def describe(self) -> dict[str, Any]:
        """What the report records about the judge (never the key)."""
        return {"configured": True, "url": self.url, "model": self.model, "prompt": self.prompt,
                "api_key_env": API_KEY_ENV, "api_key_set": bool(self.headers)}

    def judge(self, question: str, answer: str, passages: list[str]) -> JudgeVerdict:
        context = "\n\n".join(f"[{i}] {p}" for i, p in enumerate(passages, start=1)) or "(no passages)"
        body = {"model": self.model, "temperature": 0,
                "messages": [{"role": "user", "content": self.prompt.format(question=question, context=context,
                                                                            answer=answer)}]}
        try:
            r = self.client.post(self.url, json=body, headers=self.headers)
            r.raise_for_status()
            content = r.json()["choices"][0]["message"]["content"]
        except httpx.HTTPStatusError as exc:
            raise JudgeError(f"judge endpoint {self.url} answered HTTP {exc.response.status_code}") from exc
        except httpx.HTTPError as exc:
            raise JudgeError(f"judge endpoint {self.url} unreachable: {exc}") from exc
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise JudgeError(f"judge endpoint {self.url} did not return a chat completion") from exc
        return parse_verdict(str(content))


NOT_CONFIGURED = {"configured": False, "status": "not measured (no --judge-url / --judge-model given)",
                  "prompt": JUDGE_PROMPT}
