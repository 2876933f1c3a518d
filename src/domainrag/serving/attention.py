"""Causal self-attention for long-prompt prefill on CPU, registered with transformers as ``domainrag_blocked``.

Why hand-written: PyTorch's CPU flash-attention kernel does not use the AVX512-BF16 dot products
that the linear layers get from oneDNN, so it dominates a long bf16 prefill on CPU. Attention written
as bf16 ``bmm`` calls over 64-query blocks (only the keys a block can see, so the causal half is
skipped; the block's scores stay in cache) roughly halves the attention time; no library offered the
same (flex attention compiled for CPU was slower). Measurements: benchmarks/README.md
(``benchmarks/bench_serving.py --only-ttft``).

Numerics are those of transformers' own ``eager`` attention: scores in the model dtype, softmax
accumulated in fp32 (PyTorch's CPU softmax on bf16 input), probabilities rounded to the model dtype.
It is used for bf16 only: in fp32 the blocks are slower than SDPA (fp32 has no faster dot product
to win). Every other case (fp32, decoding one token, a padding mask, a cached
prefix, GPU, training) goes to the standard SDPA path unchanged.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

NAME = "domainrag_blocked"
BLOCK = 64  # queries per block: the fastest of 24/32/48/64/96/128/256 (benchmarks/README.md)
MIN_QUERY_LEN = 128  # shorter prompts: SDPA is as fast and Python's per-block overhead would dominate


@functools.cache
def _upper_triangle(n: int) -> torch.Tensor:
    """``[n, n]`` mask of the positions above the diagonal (the future keys of a block's own queries)."""
    return torch.ones(n, n, dtype=torch.bool).triu_(1)


def blocked_causal_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                             scaling: float, block: int = BLOCK) -> torch.Tensor:
    """Causal attention for ``query [1, H, L, D]`` over ``key``/``value [1, Hkv, L, D]`` (grouped-query heads).

    Returns ``[1, L, H, D]`` (transformers' attention-output layout). The query heads that share a key/value
    head are stacked, so grouped-query attention needs no copy of the keys.
    """
    batch, heads, length, dim = query.shape
    kv_heads = key.shape[1]
    group = heads // kv_heads
    rows = batch * kv_heads
    q = (query * scaling).reshape(rows, group, length, dim)
    k_t = key.reshape(rows, length, dim).transpose(1, 2)
    v = value.reshape(rows, length, dim)
    outs = []
    for start in range(0, length, block):
        end = min(length, start + block)
        n = end - start
        scores = torch.bmm(q[:, :, start:end].reshape(rows, group * n, dim), k_t[:, :, :end])
        scores = scores.view(rows, group, n, end)
        scores[..., start:end].masked_fill_(_upper_triangle(n), float("-inf"))
        probs = torch.softmax(scores, dim=-1).view(rows, group * n, end)
        outs.append(torch.bmm(probs, v[:, :end]).view(rows, group, n, dim))
    out = torch.cat(outs, dim=2).view(batch, heads, length, dim)
    return out.transpose(1, 2).contiguous()


def _forward(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
             attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
             is_causal: bool | None = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """transformers attention-interface entry: the blocked path for a maskless CPU prefill, else SDPA."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    length = query.shape[2]
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    if (attention_mask is None and causal and not dropout and query.device.type == "cpu" and query.shape[0] == 1
            and query.dtype == torch.bfloat16
            and length >= MIN_QUERY_LEN and key.shape[2] == length and query.shape[1] % key.shape[1] == 0
            and not torch.is_grad_enabled() and not kwargs.get("softcap") and kwargs.get("position_bias") is None):
        scale = scaling if scaling is not None else query.shape[-1] ** -0.5
        return blocked_causal_attention(query, key, value, scale), None
    return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                  is_causal=is_causal, **kwargs)


@functools.cache
def register() -> str:
    """Register the attention (and SDPA's mask builder under the same name) once; returns its name."""
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    AttentionInterface.register(NAME, _forward)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    return NAME
