"""Per-request sampling for the transformers backend: OpenAI's ``seed`` and penalties as logits processors.

* Penalties are mapped exactly as OpenAI defines them: each token's logit is lowered by
  ``frequency_penalty`` times the times it appeared in the completion so far, plus ``presence_penalty``
  once it appeared at all (the prompt does not count).
* ``seed``: unseeded sampling draws from torch's process-wide generator, which other generations running
  at the same time also draw from. A seeded request instead samples from its own ``torch.Generator``
  after temperature and top-p, and leaves a one-token distribution to pick greedily: the same seed and
  prompt give the same text whatever else the process does (or whatever else shares its batch).

:class:`RequestSampler` applies them per request, in ``generate``'s order, for the batched decoding loop.
Its top-p filter (:class:`TopP`) and its unseeded draw keep transformers' results and distribution without
touching the whole vocabulary more than once per step: see their docstrings.
"""

from __future__ import annotations

from typing import Any

import torch

from domainrag.serving.generator import GenerationConfig


class OpenAIPenalties:
    """``logits -= frequency * count + presence * (count > 0)`` over the tokens generated after ``prompt_len``."""

    def __init__(self, presence: float, frequency: float, prompt_len: int) -> None:
        self.presence, self.frequency, self.prompt_len = presence, frequency, prompt_len

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        generated = input_ids[:, self.prompt_len:]
        if generated.shape[1] == 0:
            return scores
        counts = torch.zeros_like(scores).scatter_add_(1, generated, torch.ones_like(generated, dtype=scores.dtype))
        return scores - self.frequency * counts - self.presence * (counts > 0).to(scores.dtype)


class SeededSample:
    """Draws the next token from ``softmax(scores)`` with a private generator; returns scores only it can win."""

    def __init__(self, seed: int) -> None:
        self.generator = torch.Generator(device="cpu").manual_seed(seed)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        probs = torch.softmax(scores.float(), dim=-1).cpu()
        token = torch.multinomial(probs, num_samples=1, generator=self.generator).to(scores.device)
        return torch.full_like(scores, float("-inf")).scatter_(1, token, 0.0)


class TopP:
    """``TopPLogitsWarper``'s nucleus (the same kept tokens), read from the top ``k`` scores when they already hold
    ``top_p`` of the probability mass, else from the library's full sort.

    Written by hand because the library sorts the whole vocabulary (49k for SmolLM2) on every call, ~5 ms a
    token on one core, which at 50 streams was most of a decode step; at temperature 0.1 the nucleus is a few
    tokens. A token is kept when the mass ranked strictly above it is below ``top_p`` (the library's rule,
    "remove while the ascending cumulative mass <= 1 - top_p", said from the top), and the best one always.
    """

    def __init__(self, top_p: float, k: int = 64) -> None:
        from transformers import TopPLogitsWarper

        self.top_p, self.k = top_p, k
        self.full = TopPLogitsWarper(top_p)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        k = min(self.k, scores.shape[-1])
        values, indices = torch.topk(scores, k, dim=-1)
        top = torch.softmax(scores, dim=-1).gather(1, indices)
        cumulative = top.cumsum(dim=-1)
        if bool((cumulative[:, -1] < self.top_p).any()):  # a flat distribution: the nucleus is wider than k
            return self.full(input_ids, scores)
        keep = (cumulative - top) < self.top_p
        keep[:, 0] = True
        return torch.full_like(scores, float("-inf")).scatter_(1, indices, values.masked_fill(~keep, float("-inf")))


def draw(scores: torch.Tensor) -> int:
    """A token drawn from ``softmax(scores [1, vocab])`` with torch's process-wide generator.

    The exponential race (argmax of ``p / E`` with ``E ~ Exp(1)``; vLLM's sampler does the same) gives exactly
    the categorical distribution in one pass, where ``torch.multinomial`` over the vocabulary costs ~1 ms.
    """
    probs = torch.softmax(scores.float(), dim=-1)
    # A noise of exactly 0 would make 0 / 0 = NaN for a removed token, and argmax picks NaN. torch's CPU draw gave
    # none in 2e8 tries (smallest 2.9e-8), but nothing documents that it cannot: clamped, it cannot matter.
    noise = torch.empty_like(probs).exponential_().clamp_(min=torch.finfo(probs.dtype).tiny)
    return int((probs / noise).argmax())


class RequestSampler:
    """One request's next-token choice, as ``generate`` would make it for ``cfg``: the logits processors in
    ``generate``'s order (repetition penalty, OpenAI penalties, temperature, top-p, seed), then argmax or a draw."""

    def __init__(self, cfg: GenerationConfig, prompt_len: int) -> None:
        # transformers is imported where a model is generated with, not at import (see .transformers)
        from transformers import RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper

        processors: list[Any] = []
        if cfg.repetition_penalty != 1.0:
            processors.append(RepetitionPenaltyLogitsProcessor(float(cfg.repetition_penalty)))
        if cfg.presence_penalty or cfg.frequency_penalty:
            processors.append(OpenAIPenalties(cfg.presence_penalty, cfg.frequency_penalty, prompt_len))
        self.do_sample = cfg.temperature > 0 and cfg.seed is None
        if cfg.temperature > 0:
            processors.append(TemperatureLogitsWarper(cfg.temperature))
            if cfg.top_p < 1.0:
                processors.append(TopP(cfg.top_p))
            if cfg.seed is not None:
                processors.append(SeededSample(cfg.seed))  # greedy over the one token it left
        self.processors = processors
        self._ids = torch.empty(1, 0, dtype=torch.long)  # ids as a tensor, grown as the completion grows
        self._known = 0

    def _input_ids(self, ids: list[int]) -> torch.Tensor:
        """``ids`` as ``[1, n]``; only the tokens appended since the last call are converted (not ~1k a step)."""
        n = len(ids)
        if n < self._known or n > self._ids.shape[1]:
            self._ids = torch.empty(1, n + 256, dtype=torch.long)
            self._known = 0
        if n > self._known:
            self._ids[0, self._known:n] = torch.tensor(ids[self._known:], dtype=torch.long)
            self._known = n
        return self._ids[:, :n]

    def __call__(self, ids: list[int], scores: torch.Tensor) -> int:
        """The next token after ``ids`` (prompt and completion so far, grown by appending between calls) given
        this step's ``scores [1, vocab]``."""
        if self.processors:
            input_ids = self._input_ids(ids)
            for processor in self.processors:
                scores = processor(input_ids, scores)
        if self.do_sample:
            return draw(scores)
        return int(scores[0].argmax())
