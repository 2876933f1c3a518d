"""SFT data: chat conversations → token ids with assistant-only labels → batches.

* Loss is computed on assistant tokens only: every assistant turn's content plus the template's
  end-of-turn token; system/user turns, role headers and padding are masked with -100. Spans are
  found by rendering the conversation prefix with the chat template and mapping character
  positions to tokens, so it works for any template that renders turns as a growing prefix.
* The labelled rows become a ``datasets.Dataset`` that TRL's SFTTrainer takes as pre-tokenized; its
  collator pads them, or (``packing``) concatenates each batch into one row with position ids
  restarting per conversation (padding-free). TRL's own ``assistant_only_loss`` is not used: it needs
  ``{% generation %}`` markers in the chat template or a template TRL knows how to patch, and refuses
  e.g. SmolLM2's; the prefix rendering below works for any template that renders turns as a growing prefix.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from datasets import Dataset

from domainrag.errors import DomainRagError
from domainrag.training.dp_debug import record_ids
from domainrag.training.hyperparameters import SFTArgs

IGNORE_INDEX = -100


@dataclass
class EncodedChat:
    """One tokenized conversation: labels are -100 except on assistant tokens."""

    input_ids: list[int]
    labels: list[int]


# ---------------------------------------------------------------------------------------------
# Tokenization with assistant-only labels


def _render(tokenizer: Any, messages: Sequence[Mapping[str, str]], generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=generation_prompt)


def assistant_char_spans(tokenizer: Any, messages: Sequence[Mapping[str, str]]) -> tuple[str, list[tuple[int, int]]]:
    """Rendered conversation and the (start, end) character span of each assistant turn.

    A span starts after the assistant header (what ``add_generation_prompt`` adds) and ends where
    the next turn's prefix begins, so it covers the content plus the template's end-of-turn text.
    """
    text = _render(tokenizer, messages)
    spans: list[tuple[int, int]] = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        prefix = _render(tokenizer, messages[:i], generation_prompt=True)
        upto = _render(tokenizer, messages[: i + 1])
        if not (text.startswith(prefix) and text.startswith(upto) and len(upto) > len(prefix)):
            raise DomainRagError(
                "the model's chat template does not render conversations as a growing prefix, so "
                "assistant tokens cannot be located",
                hint="use a model with a standard chat template (ChatML, Llama 3, Qwen ...)",
            )
        spans.append((len(prefix), len(upto)))
    return text, spans


def encode_chat(tokenizer: Any, messages: Sequence[Mapping[str, str]], max_seq_len: int) -> EncodedChat | None:
    """Token ids and labels for one conversation; None when truncation leaves no assistant token.

    Labelled per assistant turn: the content tokens plus the first special token after the
    content (the end-of-turn marker, e.g. ``<|im_end|>``); trailing template text such as the
    newline after it stays masked, so the model learns to stop exactly at end-of-turn.
    """
    text, spans = assistant_char_spans(tokenizer, messages)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = list(enc["input_ids"])
    offsets: list[tuple[int, int]] = [tuple(o) for o in enc["offset_mapping"]]
    special = set(tokenizer.all_special_ids) | {
        i for i, tok in getattr(tokenizer, "added_tokens_decoder", {}).items() if getattr(tok, "special", False)
    }
    labels = [IGNORE_INDEX] * len(ids)
    assistant = [m for m in messages if m["role"] == "assistant"]
    for (start, end), turn in zip(spans, assistant, strict=True):
        found = text.find(turn["content"], start, end)
        content_end = found + len(turn["content"]) if found >= 0 else end
        closed = found < 0  # content not found verbatim: label the whole turn
        for t, (s, _e) in enumerate(offsets):
            if s < start or s >= end:
                continue
            if s < content_end:
                labels[t] = ids[t]
            elif not closed and ids[t] in special:
                labels[t] = ids[t]
                closed = True
    ids, labels = ids[:max_seq_len], labels[:max_seq_len]
    if all(label == IGNORE_INDEX for label in labels[1:]):
        return None
    return EncodedChat(ids, labels)


def split_train_eval(n: int, eval_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Deterministic split of ``range(n)`` into (train, eval) indices; eval is empty for tiny sets."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_eval = round(n * eval_fraction) if n >= 2 else 0
    n_eval = min(max(n_eval, 1 if eval_fraction > 0 and n >= 2 else 0), n - 1) if n >= 2 else 0
    return sorted(order[n_eval:]), sorted(order[:n_eval])


def to_dataset(examples: Sequence[EncodedChat], with_ids: bool = False) -> Any:
    """A ``datasets.Dataset`` of pre-tokenized rows (``input_ids``, ``labels``) that SFTTrainer uses as is.

    With ``with_ids`` each row also carries ``example_id`` (its index), which :class:`CountingCollator`
    strips, counts and (for the data-parallel test) records.
    """
    columns: dict[str, list[Any]] = {
        "input_ids": [e.input_ids for e in examples],
        "labels": [e.labels for e in examples],
    }
    if with_ids:
        columns["example_id"] = list(range(len(examples)))
    return Dataset.from_dict(columns)


class CountingCollator:
    """Wraps the trainer's collator: counts real, computed and labelled tokens of the training batches.

    With the data-parallel debug hook on (:mod:`domainrag.training.dp_debug`) it also records the
    example ids of every training batch.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.tokens = self.padded = self.labelled = 0

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        ids = [e.pop("example_id") for e in examples if "example_id" in e]
        batch = self.inner(examples)
        if ids:  # only training rows carry ids; evaluation batches are not counted
            self.tokens += sum(len(e["input_ids"]) for e in examples)
            self.padded += int(batch["input_ids"].numel())
            self.labelled += int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
            record_ids(ids)
        return batch


def dataset_fingerprint(args: SFTArgs, train: Sequence[EncodedChat]) -> str:
    """Hash of what determines the data order; resuming with a different one would be wrong."""
    h = hashlib.sha256()
    for e in train:
        h.update(json.dumps(e.input_ids).encode())
    h.update(json.dumps([args.seed, args.batch_size, args.grad_accum, args.packing]).encode())
    return h.hexdigest()[:16]
