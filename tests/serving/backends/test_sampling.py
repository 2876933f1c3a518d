"""OpenAI's penalties and seed as transformers logits processors: exact values, and reproducible real sampling."""

from __future__ import annotations

import pytest
import torch

from domainrag.serving.backends.sampling import OpenAIPenalties, SeededSample, sampling_kwargs
from domainrag.serving.generator import GenerationConfig


def test_penalties_count_only_the_completion_tokens() -> None:
    scores = torch.zeros(1, 5)
    ids = torch.tensor([[4, 4, 4, 1, 1, 2]])  # a prompt of 3 tokens (4, 4, 4), then the completion 1, 1, 2
    out = OpenAIPenalties(presence=0.5, frequency=0.25, prompt_len=3)(ids, scores)
    assert out.tolist() == [[0.0, -(0.5 + 2 * 0.25), -(0.5 + 0.25), 0.0, 0.0]]
    assert OpenAIPenalties(1.0, 1.0, prompt_len=6)(ids, scores) is scores  # nothing generated yet


def test_seeded_sample_leaves_one_token_drawn_from_the_distribution() -> None:
    scores = torch.log(torch.tensor([[0.7, 0.2, 0.1, 1e-9]]))
    sampler = SeededSample(seed=3)
    picks = [int(sampler(torch.zeros(1, 1, dtype=torch.long), scores).argmax()) for _ in range(2000)]
    freq = [picks.count(t) / len(picks) for t in range(4)]
    assert freq[0] == pytest.approx(0.7, abs=0.04) and freq[1] == pytest.approx(0.2, abs=0.04) and freq[3] == 0
    again = SeededSample(seed=3)
    assert [int(again(torch.zeros(1, 1, dtype=torch.long), scores).argmax()) for _ in range(2000)] == picks
    one = sampler(torch.zeros(1, 1, dtype=torch.long), scores)
    assert torch.isfinite(one).sum() == 1  # generate picks that token greedily


def test_sampling_kwargs_per_case() -> None:
    assert sampling_kwargs(GenerationConfig(temperature=0), 3) == {"do_sample": False}
    assert sampling_kwargs(GenerationConfig(temperature=0.7, top_p=0.9), 3) == {
        "do_sample": True, "temperature": 0.7, "top_p": 0.9}
    seeded = sampling_kwargs(GenerationConfig(temperature=0.7, top_p=0.9, seed=1, frequency_penalty=1.0), 3)
    assert seeded["do_sample"] is False
    kinds = [type(p).__name__ for p in seeded["logits_processor"]]
    assert kinds == ["OpenAIPenalties", "TemperatureLogitsWarper", "TopPLogitsWarper", "SeededSample"]
