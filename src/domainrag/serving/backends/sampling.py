"""Per-request sampling for the transformers backend: OpenAI's ``seed`` and penalties as logits processors.

* Penalties are mapped exactly as OpenAI defines them: each token's logit is lowered by
  ``frequency_penalty`` times the times it appeared in the completion so far, plus ``presence_penalty``
  once it appeared at all (the prompt does not count).
* ``seed``: unseeded sampling draws from torch's process-wide generator, which other generations running
  at the same time also draw from. A seeded request instead samples from its own ``torch.Generator``
  after temperature and top-p, and leaves a one-token distribution to pick greedily: the same seed and
  prompt give the same text whatever else the process does (or whatever else shares its batch).

:class:`RequestSampler` applies them per request, in ``generate``'s order, for the batched decoding loop.
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


class RequestSampler:
    """One request's next-token choice, as ``generate`` would make it for ``cfg``: the logits processors in
    ``generate``'s order (repetition penalty, OpenAI penalties, temperature, top-p, seed), then argmax or a draw."""

    def __init__(self, cfg: GenerationConfig, prompt_len: int) -> None:
        # transformers is imported where a model is generated with, not at import (see .transformers)
        from transformers import RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper, TopPLogitsWarper

        processors: list[Any] = []
        if cfg.repetition_penalty != 1.0:
            processors.append(RepetitionPenaltyLogitsProcessor(float(cfg.repetition_penalty)))
        if cfg.presence_penalty or cfg.frequency_penalty:
            processors.append(OpenAIPenalties(cfg.presence_penalty, cfg.frequency_penalty, prompt_len))
        self.do_sample = cfg.temperature > 0 and cfg.seed is None
        if cfg.temperature > 0:
            processors.append(TemperatureLogitsWarper(cfg.temperature))
            if cfg.top_p < 1.0:
                processors.append(TopPLogitsWarper(cfg.top_p))
            if cfg.seed is not None:
                processors.append(SeededSample(cfg.seed))  # greedy over the one token it left
        self.processors = processors

    def __call__(self, ids: list[int], scores: torch.Tensor) -> int:
        """The next token after ``ids`` (prompt and completion so far) given this step's ``scores [1, vocab]``."""
        if self.processors:
            input_ids = torch.tensor([ids], dtype=torch.long)
            for processor in self.processors:
                scores = processor(input_ids, scores)
        if self.do_sample:
            return int(torch.multinomial(torch.softmax(scores.float(), dim=-1), num_samples=1)[0, 0])
        return int(scores[0].argmax())
