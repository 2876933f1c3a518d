"""OpenAI's penalties and seed as transformers logits processors: exact values, and reproducible real sampling."""

from __future__ import annotations

import pytest
import torch

from domainrag.serving.backends.sampling import OpenAIPenalties, RequestSampler, SeededSample, TopP, draw
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


def test_request_sampler_per_case() -> None:
    """generate's processor order; greedy at temperature 0; a seed repeats its draws; no seed samples."""
    kinds = [type(p).__name__ for p in
             RequestSampler(GenerationConfig(temperature=0.7, top_p=0.9, seed=1, frequency_penalty=1.0), 3).processors]
    assert kinds == ["RepetitionPenaltyLogitsProcessor", "OpenAIPenalties", "TemperatureLogitsWarper",
                     "TopP", "SeededSample"]
    scores = torch.log(torch.tensor([[0.4, 0.35, 0.25]]))
    greedy = RequestSampler(GenerationConfig(temperature=0, repetition_penalty=1.0), 1)
    assert greedy.processors == [] and greedy([2], scores) == 0
    assert RequestSampler(GenerationConfig(temperature=0, repetition_penalty=2.0), 1)([0, 0], scores) == 1

    def draws(cfg: GenerationConfig) -> list[int]:
        sampler = RequestSampler(cfg, 1)
        return [sampler([2], scores) for _ in range(200)]

    seeded = GenerationConfig(temperature=1.0, top_p=1.0, seed=7, repetition_penalty=1.0)
    assert draws(seeded) == draws(seeded) and len(set(draws(seeded))) == 3
    assert len(set(draws(GenerationConfig(temperature=1.0, top_p=1.0, repetition_penalty=1.0)))) == 3


def test_top_p_keeps_the_library_nucleus_from_the_top_k_and_falls_back_when_it_is_wider() -> None:
    """The same kept tokens and values as TopPLogitsWarper: peaked rows (the top-k path), a flat row (wider than
    k: the library's sort), ties at the top, and a top_p so small that only the best token stays."""
    from transformers import TopPLogitsWarper

    gen = torch.Generator().manual_seed(0)
    ids = torch.zeros(1, 1, dtype=torch.long)
    rows = [torch.randn(1, 5000, generator=gen) * 30 for _ in range(20)]  # temperature-0.1-like: a few tokens
    rows += [torch.randn(1, 5000, generator=gen) * 0.1, torch.tensor([[2.0, 2.0, 1.0, 0.0]])]
    for p in (0.95, 0.5, 1e-6):
        for scores in rows:
            ours, theirs = TopP(p, k=16)(ids, scores), TopPLogitsWarper(p)(ids, scores)
            assert torch.equal(torch.isfinite(ours), torch.isfinite(theirs))
            assert torch.equal(ours[torch.isfinite(ours)], theirs[torch.isfinite(theirs)])
    assert torch.isfinite(TopP(1e-6, k=16)(ids, rows[0])).sum() == 1


def test_draw_follows_the_distribution_and_never_picks_a_removed_token() -> None:
    scores = torch.log(torch.tensor([[0.5, 0.3, 0.2, 0.0]]))
    torch.manual_seed(0)
    picks = [draw(scores) for _ in range(4000)]
    freq = [picks.count(t) / len(picks) for t in range(4)]
    assert freq[0] == pytest.approx(0.5, abs=0.03) and freq[2] == pytest.approx(0.2, abs=0.03) and freq[3] == 0


def test_request_sampler_reads_ids_appended_between_calls() -> None:
    """The ids tensor is grown, not rebuilt: a token appended after the last call is still penalised."""
    sampler = RequestSampler(GenerationConfig(temperature=0, repetition_penalty=100.0), 1)
    scores = torch.tensor([[3.0, 2.0, 1.0]])
    ids = [2]
    assert sampler(ids, scores) == 0
    ids.append(0)
    assert sampler(ids, scores) == 1
    assert sampler([0], scores) == 1  # shorter ids (another prompt): rebuilt, not read from the old buffer


def test_draw_never_picks_a_removed_token_when_the_noise_is_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    """An exponential draw of exactly 0 made 0 / 0 = NaN for a removed token, and argmax picks NaN."""
    from domainrag.serving.backends import sampling

    class _ZeroNoise:
        def __init__(self, like: torch.Tensor) -> None:
            self.like = like

        def exponential_(self) -> torch.Tensor:
            return torch.zeros_like(self.like)

    monkeypatch.setattr(sampling.torch, "empty_like", _ZeroNoise)
    assert draw(torch.log(torch.tensor([[0.5, 0.5, 0.0]]))) in (0, 1)
