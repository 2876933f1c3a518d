"""Gate signals read from the reader's logits (see :mod:`.gate`): its preference for the not-found answer
(:func:`not_found_margin`) and its yes/no verdict on whether the passages state the answer (:func:`answer_check`).

Constrained scoring: the mean log-probability of the first ``n`` tokens of the not-found text given the
prompt, minus that of the reader's greedy answer's first ``n`` tokens. It is 0 when the greedy answer
starts with the not-found text and negative otherwise; the more negative, the more the reader prefers an
answer. Needs a backend whose logits can be read: the transformers backend (its causal LM and tokenizer)
or llama.cpp (its context, with the KV cache rolled back between the two continuations); remote servers
give ``None``.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any

import numpy as np
import torch

FIRST_TOKENS = 4
CHECK_SYSTEM = ("You check whether numbered context passages answer a question. Reply with one word: "
                "yes if the passages state the answer, no if they do not.")
CHECK_QUESTION = "Do the passages state the answer to the question? yes or no?"
_YES = ("yes", "Yes", " yes", " Yes", "YES")
_NO = ("no", "No", " no", " No", "NO")


def _is_llamacpp(generator: Any) -> bool:
    return all(hasattr(generator, a) for a in ("llm", "chat_prompt_tokens", "eval_tokens", "_lock"))


def supports_reader_score(generator: Any) -> bool:
    """Whether ``generator`` exposes what :func:`not_found_margin` needs (transformers or llama.cpp logits)."""
    return all(hasattr(generator, a) for a in ("model", "tokenizer", "prompt_ids")) or _is_llamacpp(generator)


def not_found_margin(generator: Any, messages: list[dict[str, str]], not_found: str,
                     n: int = FIRST_TOKENS) -> float | None:
    """Mean log p(first ``n`` not-found tokens) − mean log p(greedy first ``n`` tokens); ``None`` if unsupported.

    One prefill of the prompt; both continuations then run token by token on copies of its KV cache, so the
    cost is about one prompt prefill (the answer's own prefill is not shared: it runs later, in another call).
    """
    if not supports_reader_score(generator):
        return None
    if _is_llamacpp(generator):
        return _llamacpp_margin(generator, messages, not_found, n)
    model, tokenizer = generator.model, generator.tokenizer
    prompt = generator.prompt_ids(list(messages)).to(model.device)
    target = tokenizer(not_found, add_special_tokens=False, return_tensors="pt")["input_ids"][0, :n].tolist()
    lock = getattr(generator, "_lock", None)  # the backend serves one forward pass at a time
    with lock if lock is not None else contextlib.nullcontext(), torch.inference_mode():
        out = model(input_ids=prompt, use_cache=True, logits_to_keep=1)  # the LM head on the last position only
        first = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
        nf = _continue(model, copy.deepcopy(out.cache), first, target, prompt.shape[1])
        best = _continue(model, out.cache, first, None, prompt.shape[1], steps=len(target))
    return min(0.0, nf - best)


def _continue(model: Any, cache: Any, logprobs: torch.Tensor, forced: list[int] | None, position: int,
              steps: int = 0) -> float:
    """Mean log-probability of ``forced`` tokens (or of the greedy ones, ``steps`` of them) after the prompt."""
    tokens = forced if forced is not None else [None] * steps
    total = 0.0
    for i, token in enumerate(tokens):
        chosen = int(logprobs.argmax()) if token is None else token
        total += float(logprobs[chosen])
        if i + 1 == len(tokens):
            break
        step = torch.tensor([[chosen]], device=model.device)
        out = model(input_ids=step, cache=cache, use_cache=True,
                    position_ids=torch.tensor([[position + i]], device=model.device))
        cache, logprobs = out.cache, torch.log_softmax(out.logits[0, -1].float(), dim=-1)
    return total / max(1, len(tokens))


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - logits.max()
    return shifted - np.log(np.exp(shifted).sum())


def _llamacpp_margin(generator: Any, messages: list[dict[str, str]], not_found: str, n: int) -> float:
    """:func:`not_found_margin` on a llama.cpp context: each continuation is scored token by token with
    :meth:`~domainrag.serving.backends.llamacpp.LlamaCppGenerator.eval_tokens`, which keeps the prompt (and
    any prefix the context already held) evaluated once."""
    prompt = generator.chat_prompt_tokens(messages)
    target = generator.llm.tokenize(not_found.encode(), add_bos=False)[:n]

    def run(forced: list[int] | None, steps: int) -> float:
        tokens: list[int | None] = list(forced) if forced is not None else [None] * steps
        sequence, total = list(prompt), 0.0
        for token in tokens:
            logprobs = _log_softmax(generator.eval_tokens(sequence))
            chosen = int(logprobs.argmax()) if token is None else token
            total += float(logprobs[chosen])
            sequence.append(chosen)
        return total / max(1, len(tokens))

    with generator._lock:
        nf = run(target, 0)
        best = run(None, len(target))
    return min(0.0, nf - best)


def check_messages(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """The yes/no question put to the reader: the app's passages and question (its last user turn) under a
    checking instruction instead of the answering one."""
    return [{"role": "system", "content": CHECK_SYSTEM},
            {"role": "user", "content": f"{messages[-1]['content']}\n\n{CHECK_QUESTION}"}]


def answer_check(generator: Any, messages: list[dict[str, str]]) -> float | None:
    """log p(yes) − log p(no) of the reader's first reply token to :data:`CHECK_QUESTION` (each summed over
    casings); ``None`` if the backend has no logits. One prompt prefill, no generation.

    Asked to *check* rather than to answer, a small reader separates passages that hold the answer from
    passages that do not far better than its not-found margin does (benchmarks/README.md, answerability gate).
    """
    if not supports_reader_score(generator):
        return None
    check = check_messages(messages)
    if _is_llamacpp(generator):
        def first(word: str) -> int:
            return generator.llm.tokenize(word.encode(), add_bos=False)[0]

        with generator._lock:
            logits = np.asarray(generator.eval_tokens(generator.chat_prompt_tokens(check)), dtype=np.float64)
    else:
        model, tokenizer = generator.model, generator.tokenizer

        def first(word: str) -> int:
            return tokenizer(word, add_special_tokens=False)["input_ids"][0]

        lock = getattr(generator, "_lock", None)
        with lock if lock is not None else contextlib.nullcontext(), torch.inference_mode():
            ids = generator.prompt_ids(check).to(model.device)
            logits = model(input_ids=ids, logits_to_keep=1).logits[0, -1].double().cpu().numpy()
    logprobs = _log_softmax(logits)
    yes = sorted({first(w) for w in _YES})
    no = sorted({first(w) for w in _NO})
    return float(np.logaddexp.reduce(logprobs[yes]) - np.logaddexp.reduce(logprobs[no]))
