"""SFT data: chat conversations → token ids with assistant-only labels → batches.

* Loss is computed on assistant tokens only: every assistant turn's content plus the template's
  end-of-turn token; system/user turns, role headers and padding are masked with -100. Spans are
  found by rendering the conversation prefix with the chat template and mapping character
  positions to tokens, so it works for any template that renders turns as a growing prefix.
* The data order is a pure function of ``seed`` and the micro-batch index (so resume is exact).
* Batches are padded (:func:`collate`) or packed (:func:`collate_packed`): each micro-batch's
  conversations concatenated into rows of at most ``max_seq_len`` tokens with position ids
  restarting per conversation; the same labels and loss as padding, fewer computed positions.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DataCollatorWithFlattening

from domainrag.errors import DomainRagError
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


def micro_batch_indices(n_train: int, batch_size: int, seed: int, micro_step: int) -> list[int]:
    """Example indices of global micro-batch ``micro_step``: a pure function, so resume is exact.

    Each epoch is a fresh permutation seeded by ``(seed, epoch)``; the last batch may be short.
    """
    per_epoch = math.ceil(n_train / batch_size)
    epoch, pos = divmod(micro_step, per_epoch)
    order = list(range(n_train))
    random.Random(f"{seed}:{epoch}").shuffle(order)
    return order[pos * batch_size : (pos + 1) * batch_size]


def collate(batch: Sequence[EncodedChat], pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Padding: one row per conversation, right-padded to the longest, with an attention mask."""
    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, e in enumerate(batch):
        n = len(e.input_ids)
        ids[row, :n] = torch.tensor(e.input_ids)
        labels[row, :n] = torch.tensor(e.labels)
        mask[row, :n] = 1
    return {"input_ids": ids.to(device), "labels": labels.to(device), "attention_mask": mask.to(device)}


def pack_rows(lengths: Sequence[int], row_len: int) -> list[list[int]]:
    """Group examples (by index) into rows of at most ``row_len`` tokens: first-fit decreasing.

    Deterministic (ties keep input order). An example longer than ``row_len`` gets a row of its own.
    """
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        slot = next((r for r, free in enumerate(room) if lengths[i] <= free), None)
        if slot is None:
            rows.append([i])
            room.append(row_len - lengths[i])
        else:
            rows[slot].append(i)
            room[slot] -= lengths[i]
    return rows


def collate_packed(
    batch: Sequence[EncodedChat], pad_id: int, row_len: int, device: torch.device
) -> dict[str, torch.Tensor]:
    """Packing: the micro-batch's conversations concatenated into rows of at most ``row_len`` tokens.

    Each row comes from transformers' :class:`DataCollatorWithFlattening`: position ids restart at
    every conversation and the label of each one's first token is masked, so no conversation
    learns to predict the next one's start. With ``position_ids`` and no ``attention_mask`` the
    model builds a block-diagonal causal mask (transformers' packed-sequence detection), so no
    token attends across a boundary: same labels and same loss as :func:`collate`. Rows are
    capped at ``row_len`` because on CPU (sdpa/eager, no varlen kernel) attention is quadratic in
    the row length; the short rows' tail padding is a separate position-id segment with no labels.
    """
    flatten = DataCollatorWithFlattening(return_tensors="pt")
    rows = [
        flatten([{"input_ids": batch[i].input_ids, "labels": batch[i].labels} for i in row])
        for row in pack_rows([len(e.input_ids) for e in batch], row_len)
    ]
    width = max(r["input_ids"].shape[1] for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    for k, r in enumerate(rows):
        n = r["input_ids"].shape[1]
        ids[k, :n], labels[k, :n], positions[k, :n] = r["input_ids"][0], r["labels"][0], r["position_ids"][0]
        positions[k, n:] = torch.arange(width - n)
    real = torch.tensor(sum(len(e.input_ids) for e in batch))
    return {
        "input_ids": ids.to(device),
        "labels": labels.to(device),
        "position_ids": positions.to(device),
        "n_tokens": real,
    }


def dataset_fingerprint(args: SFTArgs, train: Sequence[EncodedChat]) -> str:
    """Hash of what determines the data order; resuming with a different one would be wrong."""
    h = hashlib.sha256()
    for e in train:
        h.update(json.dumps(e.input_ids).encode())
    h.update(json.dumps([args.seed, args.batch_size, args.grad_accum]).encode())
    return h.hexdigest()[:16]
