"""The blocked CPU prefill attention: same results as SDPA, and SDPA itself wherever it does not apply."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from domainrag.serving import attention
from domainrag.serving.attention import blocked_causal_attention


def _qkv(length: int, dtype: torch.dtype, heads: int = 9, kv_heads: int = 3, dim: int = 64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(1, heads, length, dim, generator=g).to(dtype)
    k = torch.randn(1, kv_heads, length, dim, generator=g).to(dtype)
    v = torch.randn(1, kv_heads, length, dim, generator=g).to(dtype)
    return q, k, v


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Reference in fp32, in the attention-output layout ``[1, L, H, D]``."""
    out = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=True, enable_gqa=True)
    return out.transpose(1, 2)


@pytest.mark.parametrize("length", [1, 63, 64, 65, 200, 300])
@pytest.mark.parametrize("kv_heads", [1, 3, 9])
def test_matches_sdpa_in_fp32(length: int, kv_heads: int) -> None:
    q, k, v = _qkv(length, torch.float32, kv_heads=kv_heads, seed=length)
    out = blocked_causal_attention(q, k, v, scaling=64**-0.5)
    assert out.shape == (1, length, 9, 64)
    torch.testing.assert_close(out, _sdpa(q, k, v), atol=2e-5, rtol=1e-4)


def test_bf16_error_is_that_of_bf16_sdpa() -> None:
    q, k, v = _qkv(300, torch.bfloat16)
    ref = _sdpa(q, k, v)
    ours = (blocked_causal_attention(q, k, v, scaling=0.125).float() - ref).abs().max()
    theirs = (F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True).transpose(1, 2).float()
              - ref).abs().max()
    assert ours < 0.05
    assert ours <= 3 * theirs + 1e-3


def test_block_size_does_not_change_the_result() -> None:
    q, k, v = _qkv(200, torch.float32, seed=3)
    a = blocked_causal_attention(q, k, v, 0.125, block=16)
    b = blocked_causal_attention(q, k, v, 0.125, block=256)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


class _Module(torch.nn.Module):
    is_causal = True
    num_key_value_groups = 3


@pytest.mark.parametrize("case", ["decode", "mask", "short", "grad", "cached_prefix", "fp32"])
def test_other_cases_are_plain_sdpa(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    called: list[int] = []
    real = attention.blocked_causal_attention
    monkeypatch.setattr(attention, "blocked_causal_attention", lambda *a, **kw: called.append(1) or real(*a, **kw))
    q, k, v = _qkv(attention.MIN_QUERY_LEN, torch.float32 if case == "fp32" else torch.bfloat16)
    mask = None
    if case == "decode":
        q = q[:, :, -1:]
    elif case == "short":
        q, k, v = q[:, :, :16], k[:, :, :16], v[:, :, :16]
    elif case == "mask":
        mask = torch.ones(1, 1, q.shape[2], k.shape[2], dtype=torch.bool).tril_()
    elif case == "cached_prefix":
        q = q[:, :, 8:]
        mask = torch.ones(1, 1, q.shape[2], k.shape[2], dtype=torch.bool).tril_(8)
    with torch.set_grad_enabled(case == "grad"):
        out, _ = attention._forward(_Module(), q, k, v, mask, scaling=0.125)
        ref, _ = sdpa_attention_forward(_Module(), q, k, v, mask, scaling=0.125)
    assert not called
    torch.testing.assert_close(out, ref)


def test_long_prefill_takes_the_blocked_path(monkeypatch: pytest.MonkeyPatch) -> None:
    called: list[int] = []
    real = attention.blocked_causal_attention
    monkeypatch.setattr(attention, "blocked_causal_attention", lambda *a, **kw: called.append(1) or real(*a, **kw))
    q, k, v = _qkv(attention.MIN_QUERY_LEN + 5, torch.bfloat16)
    with torch.inference_mode():
        out, _ = attention._forward(_Module(), q, k, v, None, scaling=0.125)
    assert called
    torch.testing.assert_close(out.float(), _sdpa(q, k, v), atol=0.05, rtol=0.02)


@pytest.mark.integration
def test_real_model_logits_within_bf16_noise(monkeypatch: pytest.MonkeyPatch) -> None:
    """SmolLM2-135M in bf16 on a 300-token prompt: the blocked attention runs in every layer, and its
    logits stay as close to the fp32 model's as bf16 SDPA's do."""
    from transformers import AutoModelForCausalLM

    from domainrag.zoo import resolve_llm

    path = resolve_llm("smollm2-135m-instruct")
    ids = torch.randint(100, 40000, (1, 300), generator=torch.Generator().manual_seed(0))
    calls: list[int] = []
    real = attention.blocked_causal_attention
    monkeypatch.setattr(attention, "blocked_causal_attention", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    logits = {}
    for impl, dtype in (("sdpa", torch.float32), ("sdpa", torch.bfloat16), (attention.register(), torch.bfloat16)):
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation=impl).eval()
        with torch.inference_mode():
            logits[impl, dtype] = model(input_ids=ids).logits[0].float()
    assert len(calls) == model.config.num_hidden_layers
    ref = logits["sdpa", torch.float32]
    theirs = (logits["sdpa", torch.bfloat16] - ref).abs().mean()
    ours = (logits[attention.NAME, torch.bfloat16] - ref).abs().mean()
    assert ours <= 1.5 * theirs
    def agreement(key: tuple[str, torch.dtype]) -> float:
        return float((logits[key].argmax(-1) == ref.argmax(-1)).float().mean())

    # measured: 0.1055 vs 0.1067 mean error, next-token agreement 0.92 for both
    assert agreement((attention.NAME, torch.bfloat16)) >= agreement(("sdpa", torch.bfloat16)) - 0.03
