"""Faithfulness by an LLM judge: is every answer sentence supported by the passages the app used?

The answer is split into sentences (citation markers removed); the judge model gets the passages
and one sentence at a time and is asked a yes/no question. Faithfulness = supported sentences /
sentences. One question per sentence keeps the task within reach of small models, and the verdict
is read in the most robust way each backend allows:

* :class:`LogitJudge` — an in-process transformers LLM (any LLM of the workspace catalogue or a
  base model such as ``smollm2-135m-instruct``): no text is generated; the next-token logits of
  "yes" and "no" are compared, so the verdict can never be unparseable and P(yes) is recorded.
* :class:`OpenAIJudge` — any OpenAI-compatible ``/chat/completions`` endpoint (URL + key from
  ``$DOMAINRAG_JUDGE_API_KEY``, never written anywhere): the reply text is parsed for yes/no.
* :class:`TextJudge` — a catalogue LLM served by another backend (a deployed remote endpoint,
  llama.cpp): the generated text is parsed the same way.

The prompt is a module constant and every judge's :meth:`describe` returns it, so a report always
records the exact instruction behind its faithfulness numbers.
"""

from __future__ import annotations

import math
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from domainrag.errors import DomainRagError
from domainrag.evaluation.answers import SENTENCE_BREAK
from domainrag.serving.reader_score import NO_WORDS, YES_WORDS, single_token_ids, token_encoder, yes_no_log_odds

API_KEY_ENV = "DOMAINRAG_JUDGE_API_KEY"
PASSAGE_CHARS = 1200
"""Each passage shown to the judge is cut to this many characters (small models have small contexts)."""

JUDGE_SYSTEM = ("You are a strict fact checker. A statement is supported only if the context says the same thing. "
                "If the context contradicts the statement or does not mention it, answer no.")
JUDGE_PROMPT = """Context: {context}
Statement: {statement}
Does the context support the statement? Answer yes or no."""
# Compact on purpose: with blank lines, numbered single passages or few-shot turns, SmolLM2-135M stopped
# ranking supported statements above contradicted ones (0-4 of 6 test pairs instead of 6 of 6).

_CITE = re.compile(r"\s*\[\d{1,3}\]")
_ANSWER_WORD = re.compile(r"\b(yes|no|supported|unsupported|not supported)\b", re.IGNORECASE)


class JudgeError(DomainRagError):
    """The judge failed or replied with something that is not a verdict."""


@dataclass(frozen=True)
class JudgeVerdict:
    """Faithfulness of one answer: ``score`` = ``supported`` / ``claims`` (1.0 when it makes no claim)."""

    score: float
    claims: int
    supported: int
    unsupported: list[str]
    sentences: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"score": self.score, "claims": self.claims, "supported": self.supported,
                "unsupported": self.unsupported, "sentences": self.sentences}


def split_claims(answer: str) -> list[str]:
    """Answer sentences worth checking: citation markers dropped, sentences without a letter skipped."""
    out = []
    for part in SENTENCE_BREAK.split(_CITE.sub("", answer)):
        sentence = part.strip()
        if any(ch.isalpha() for ch in sentence):
            out.append(sentence)
    return out


def judge_messages(statement: str, passages: Sequence[str], prompt: str = JUDGE_PROMPT) -> list[dict[str, str]]:
    """The chat the judge sees for one sentence: the passages (each cut to PASSAGE_CHARS, numbered when
    there are several) and the statement."""
    texts = [" ".join(p.split())[:PASSAGE_CHARS] for p in passages]
    context = texts[0] if len(texts) == 1 else "\n".join(f"[{i}] {t}" for i, t in enumerate(texts, start=1))
    return [{"role": "system", "content": JUDGE_SYSTEM},
            {"role": "user", "content": prompt.format(context=context or "(no passages)", statement=statement)}]


def parse_yes_no(reply: str) -> bool:
    """True/False for a reply that answers yes/no (first such word wins); JudgeError otherwise."""
    m = _ANSWER_WORD.search(reply)
    if not m:
        raise JudgeError(f"judge reply is neither yes nor no: {reply[:200]!r}")
    return m.group(1).lower() in ("yes", "supported")


class SentenceJudge:
    """Base: judges an answer sentence by sentence; subclasses decide one sentence (:meth:`check`)."""

    prompt: str = JUDGE_PROMPT

    def check(self, statement: str, passages: Sequence[str]) -> tuple[bool, dict[str, Any]]:
        """(supported, detail recorded in the report) for one sentence."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        raise NotImplementedError

    def judge(self, question: str, answer: str, passages: list[str]) -> JudgeVerdict:
        """Faithfulness of ``answer`` to ``passages`` (``question`` is not shown: support is about the passages)."""
        claims = split_claims(answer)
        sentences, unsupported = [], []
        for claim in claims:
            ok, detail = self.check(claim, passages)
            sentences.append({"sentence": claim, "supported": ok, **detail})
            if not ok:
                unsupported.append(claim)
        supported = len(claims) - len(unsupported)
        return JudgeVerdict(supported / len(claims) if claims else 1.0, len(claims), supported, unsupported, sentences)


class LogitJudge(SentenceJudge):
    """An in-process causal LM: supported when P(yes) ≥ ``threshold``, P(yes) = softmax over the yes/no logits.

    ``generator`` is a :class:`~domainrag.serving.backends.TransformersGenerator` (model + tokenizer).
    Reading logits instead of generated text makes even a 135M model give a verdict for every sentence.
    """

    def __init__(self, generator: Any, name: str, *, threshold: float = 0.5, prompt: str = JUDGE_PROMPT) -> None:
        if not 0.0 < threshold < 1.0:
            raise JudgeError(f"judge threshold must be between 0 and 1, not {threshold}")
        self.generator, self.name, self.threshold, self.prompt = generator, name, threshold, prompt
        encode = token_encoder(generator)
        self.yes_ids = single_token_ids(encode, YES_WORDS)
        self.no_ids = single_token_ids(encode, NO_WORDS)
        if not self.yes_ids or not self.no_ids:
            raise JudgeError(f"judge model '{name}': its tokenizer has no single token for 'yes'/'no'",
                             hint="use another judge model, or a judge behind an OpenAI-compatible URL")
        self._lock = getattr(generator, "_lock", None) or threading.Lock()

    def p_yes(self, statement: str, passages: Sequence[str]) -> float:
        import torch

        ids = self.generator.prompt_ids(judge_messages(statement, passages, self.prompt))
        with self._lock, torch.inference_mode():
            logits = self.generator.model(input_ids=ids).logits[0, -1].float()
        log_odds = yes_no_log_odds(logits.cpu().numpy(), self.yes_ids, self.no_ids)
        return 1.0 / (1.0 + math.exp(-log_odds))

    def check(self, statement: str, passages: Sequence[str]) -> tuple[bool, dict[str, Any]]:
        p = self.p_yes(statement, passages)
        return p >= self.threshold, {"p_yes": round(p, 4)}

    def describe(self) -> dict[str, Any]:
        return {"configured": True, "kind": "in-process (yes/no next-token logits)", "model": self.name,
                "threshold": self.threshold, "system": JUDGE_SYSTEM, "prompt": self.prompt}


class TextJudge(SentenceJudge):
    """Any :class:`~domainrag.serving.generator.Generator` (remote or llama.cpp catalogue model): parses its text."""

    def __init__(self, generator: Any, name: str, *, prompt: str = JUDGE_PROMPT, max_tokens: int = 8) -> None:
        self.generator, self.name, self.prompt, self.max_tokens = generator, name, prompt, max_tokens

    def check(self, statement: str, passages: Sequence[str]) -> tuple[bool, dict[str, Any]]:
        from domainrag.serving.generator import GenerationConfig

        try:
            reply = self.generator.generate(judge_messages(statement, passages, self.prompt),
                                            GenerationConfig(temperature=0.0, max_new_tokens=self.max_tokens))
        except DomainRagError as exc:
            raise JudgeError(f"judge model '{self.name}' failed: {exc.message}") from exc
        return parse_yes_no(reply), {"reply": reply.strip()[:80]}

    def describe(self) -> dict[str, Any]:
        return {"configured": True, "kind": "catalogue model (reply text parsed)", "model": self.name,
                "system": JUDGE_SYSTEM, "prompt": self.prompt}


class OpenAIJudge(SentenceJudge):
    """Calls ``<url>/chat/completions`` (``url`` may also be the full endpoint) at temperature 0."""

    def __init__(
        self, url: str, model: str, *, api_key: str | None = None, timeout: float = 120.0,
        client: httpx.Client | None = None, prompt: str = JUDGE_PROMPT, max_tokens: int = 8,
    ) -> None:
        base = url.rstrip("/")
        if not base.startswith(("http://", "https://")):
            raise JudgeError(f"judge url '{url}' is not an http(s) URL", hint="e.g. http://127.0.0.1:8000/v1")
        self.url = base if base.endswith("/chat/completions") else base + "/chat/completions"
        self.model, self.prompt, self.max_tokens = model, prompt, max_tokens
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.client = client or httpx.Client(timeout=timeout)

    def describe(self) -> dict[str, Any]:
        """What the report records about the judge (never the key)."""
        return {"configured": True, "kind": "OpenAI-compatible endpoint (reply text parsed)", "url": self.url,
                "model": self.model, "api_key_env": API_KEY_ENV, "api_key_set": bool(self.headers),
                "system": JUDGE_SYSTEM, "prompt": self.prompt}

    def check(self, statement: str, passages: Sequence[str]) -> tuple[bool, dict[str, Any]]:
        body = {"model": self.model, "temperature": 0, "max_tokens": self.max_tokens,
                "messages": judge_messages(statement, passages, self.prompt)}
        try:
            r = self.client.post(self.url, json=body, headers=self.headers)
            r.raise_for_status()
            content = r.json()["choices"][0]["message"]["content"]
        except httpx.HTTPStatusError as exc:
            raise JudgeError(f"judge endpoint {self.url} answered HTTP {exc.response.status_code}",
                             hint=f"check ${API_KEY_ENV}" if exc.response.status_code in (401, 403) else None) from exc
        except httpx.HTTPError as exc:
            raise JudgeError(f"judge endpoint {self.url} unreachable: {exc}") from exc
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise JudgeError(f"judge endpoint {self.url} did not return a chat completion") from exc
        reply = str(content)
        return parse_yes_no(reply), {"reply": reply.strip()[:80]}


def judge_from_catalogue(ws: Any, name: str, *, threshold: float = 0.5) -> SentenceJudge:
    """A judge from a workspace LLM (registered or base model), served the way the catalogue says.

    In-process transformers models are judged by logits; other backends by their reply text.
    """
    from domainrag.serving.backends import TransformersGenerator, generator_for, load_generator

    generator = generator_for(ws, name)
    if isinstance(generator, TransformersGenerator):
        if generator.dtype != "float32":
            # Verdicts compare P(yes) between sentences that differ by 1e-3 with a small judge; bf16
            # rounding (the serving default on CPUs with native bf16) would decide them, so judge in fp32.
            generator = load_generator(*ws.llm_path(name), name, "float32")
        return LogitJudge(generator, name, threshold=threshold)
    return TextJudge(generator, name)


NOT_CONFIGURED = {"configured": False, "status": "not measured (no judge model given)",
                  "system": JUDGE_SYSTEM, "prompt": JUDGE_PROMPT}
