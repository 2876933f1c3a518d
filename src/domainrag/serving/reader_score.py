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
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

FIRST_TOKENS = 4
CHECK_SYSTEM = ("You check whether numbered context passages answer a question. Reply with one word: "
                "yes if the passages state the answer, no if they do not.")
CHECK_QUESTION = "Do the passages state the answer to the question? yes or no?"
YES_WORDS = ("yes", "Yes", " yes", " Yes", "YES", " YES")
NO_WORDS = ("no", "No", " no", " No", "NO", " NO")
"""The reply tokens read as "yes" / "no" (by the gate's check and the in-process faithfulness judge)."""


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


def single_token_ids(encode: Callable[[str], list[int]], words: Sequence[str]) -> list[int]:
    """Ids of the ``words`` the tokenizer writes as one token, in order, without repeats (a word split into
    several tokens is left out: its first piece, "Y" of "YES", is not a yes)."""
    ids: list[int] = []
    for word in words:
        enc = encode(word)
        if len(enc) == 1 and enc[0] not in ids:
            ids.append(enc[0])
    return ids


def yes_no_log_odds(logits: np.ndarray, yes: Sequence[int], no: Sequence[int]) -> float:
    """log p(yes) − log p(no) of one next-token distribution, each side summed over its token ids."""
    values = np.asarray(logits, dtype=np.float64)
    return float(np.logaddexp.reduce(values[list(yes)]) - np.logaddexp.reduce(values[list(no)]))


def token_encoder(generator: Any) -> Callable[[str], list[int]]:
    """The backend's tokenizer as ``text -> ids`` (no special tokens), llama.cpp or transformers."""
    if _is_llamacpp(generator):
        return lambda text: generator.llm.tokenize(text.encode(), add_bos=False)
    return lambda text: generator.tokenizer(text, add_special_tokens=False)["input_ids"]


def _next_token_logits(generator: Any, messages: list[dict[str, str]]) -> np.ndarray:
    """The logits of the reader's first reply token to ``messages``: one prompt prefill, no generation."""
    if _is_llamacpp(generator):
        with generator._lock:
            return np.asarray(generator.eval_tokens(generator.chat_prompt_tokens(messages)), dtype=np.float64)
    model = generator.model
    lock = getattr(generator, "_lock", None)  # the backend serves one forward pass at a time
    with lock if lock is not None else contextlib.nullcontext(), torch.inference_mode():
        ids = generator.prompt_ids(messages).to(model.device)
        return model(input_ids=ids, logits_to_keep=1).logits[0, -1].double().cpu().numpy()


def answer_check(generator: Any, messages: list[dict[str, str]]) -> float | None:
    """log p(yes) − log p(no) of the reader's first reply token to :data:`CHECK_QUESTION` (each side summed
    over :data:`YES_WORDS` / :data:`NO_WORDS`); ``None`` if the backend has no logits or its tokenizer no
    single-token yes/no. One prompt prefill, no generation.

    Asked to *check* rather than to answer, a small reader separates passages that hold the answer from
    passages that do not far better than its not-found margin does (benchmarks/README.md, answerability gate).
    """
    if not supports_reader_score(generator):
        return None
    encode = token_encoder(generator)
    yes, no = single_token_ids(encode, YES_WORDS), single_token_ids(encode, NO_WORDS)
    if not yes or not no:
        return None
    return yes_no_log_odds(_next_token_logits(generator, check_messages(messages)), yes, no)
