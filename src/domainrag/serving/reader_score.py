"""The reader's own preference for the not-found answer, from its logits (a gate signal, see :mod:`.gate`).

Constrained scoring: the mean log-probability of the first ``n`` tokens of the not-found text given the
prompt, minus that of the reader's greedy answer's first ``n`` tokens. It is 0 when the greedy answer
starts with the not-found text and negative otherwise; the more negative, the more the reader prefers an
answer. Needs a backend that exposes a causal LM and its tokenizer (the transformers backend); other
backends (llama.cpp, remote servers) give ``None``.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

FIRST_TOKENS = 4


def supports_reader_score(generator: Any) -> bool:
    """Whether ``generator`` exposes what :func:`not_found_margin` needs (model, tokenizer, prompt_ids)."""
    return all(hasattr(generator, a) for a in ("model", "tokenizer", "prompt_ids"))


def _token_logprobs(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)


def not_found_margin(generator: Any, messages: list[dict[str, str]], not_found: str,
                     n: int = FIRST_TOKENS) -> float | None:
    """Mean log p(first ``n`` not-found tokens) − mean log p(greedy first ``n`` tokens); ``None`` if unsupported."""
    if not supports_reader_score(generator):
        return None
    model, tokenizer = generator.model, generator.tokenizer
    prompt = generator.prompt_ids(list(messages)).to(model.device)
    target = tokenizer(not_found, add_special_tokens=False, return_tensors="pt")["input_ids"][:, :n].to(model.device)
    lock = getattr(generator, "_lock", None)  # the backend serves one forward pass at a time
    with lock if lock is not None else contextlib.nullcontext(), torch.inference_mode():
        # Two prefills (prompt + not-found prefix; the greedy continuation): a small cost beside the answer.
        out = model(input_ids=torch.cat([prompt, target], dim=1), use_cache=False)
        start = prompt.shape[1] - 1
        nf_logits = out.logits[0, start:start + target.shape[1]]
        nf = _token_logprobs(nf_logits, target[0]).mean().item()
        greedy = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt),
                                max_new_tokens=target.shape[1], do_sample=False, output_logits=True,
                                return_dict_in_generate=True,
                                pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
        ids = greedy.sequences[0, prompt.shape[1]:]
        logits = torch.stack(list(greedy.logits), dim=1)[0, : ids.shape[0]]
        best = _token_logprobs(logits, ids).mean().item()
    return min(0.0, nf - best)

