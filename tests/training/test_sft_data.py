"""SFT data: assistant-only labels, split and order, padding and packing."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
import torch

from domainrag.training.sft_data import (
    IGNORE_INDEX,
    collate,
    collate_packed,
    encode_chat,
    micro_batch_indices,
    pack_rows,
    split_train_eval,
)
from domainrag.training.sft_fit import loss_sum

pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------------------------------
# Labels


def _labelled_spans(ids: list[int], labels: list[int]) -> list[list[int]]:
    spans: list[list[int]] = []
    current: list[int] = []
    for tok, lab in zip(ids, labels, strict=True):
        if lab != IGNORE_INDEX:
            assert lab == tok
            current.append(tok)
        elif current:
            spans.append(current)
            current = []
    if current:
        spans.append(current)
    return spans


@pytest.mark.integration
def test_labels_cover_exactly_assistant_content_and_end_of_turn(tokenizer) -> None:  # type: ignore[no-untyped-def]
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And of Italy?"},
        {"role": "assistant", "content": "Rome, since 1871."},
    ]
    enc = encode_chat(tokenizer, messages, max_seq_len=512)
    assert enc is not None
    assert tokenizer.decode(enc.input_ids) == tokenizer.apply_chat_template(messages, tokenize=False)
    spans = [tokenizer.decode(s) for s in _labelled_spans(enc.input_ids, enc.labels)]
    eot = tokenizer.eos_token  # <|im_end|> for ChatML
    assert spans == [f"Paris.{eot}", f"Rome, since 1871.{eot}"]


@pytest.mark.integration
def test_truncation_that_cuts_every_assistant_token_drops_the_example(tokenizer) -> None:  # type: ignore[no-untyped-def]
    messages = [{"role": "user", "content": "word " * 50}, {"role": "assistant", "content": "ok"}]
    assert encode_chat(tokenizer, messages, max_seq_len=20) is None
    kept = encode_chat(tokenizer, messages, max_seq_len=512)
    assert kept is not None and sum(lab != IGNORE_INDEX for lab in kept.labels) == 2  # "ok" + <|im_end|>


# ---------------------------------------------------------------------------------------------
# Data order and split


def test_split_is_deterministic_and_disjoint() -> None:
    train, evals = split_train_eval(20, 0.1, seed=3)
    assert (train, evals) == split_train_eval(20, 0.1, seed=3)
    assert len(evals) == 2 and not set(train) & set(evals) and sorted(train + evals) == list(range(20))
    assert split_train_eval(1, 0.5, seed=0) == ([0], [])


def test_each_epoch_visits_every_example_once() -> None:
    per_epoch = [micro_batch_indices(10, 4, seed=1, micro_step=m) for m in range(3)]
    assert sorted(i for b in per_epoch for i in b) == list(range(10))
    assert [len(b) for b in per_epoch] == [4, 4, 2]
    assert per_epoch != [micro_batch_indices(10, 4, seed=1, micro_step=m) for m in range(3, 6)]



# ---------------------------------------------------------------------------------------------
# Packing


def test_pack_rows_first_fit_decreasing() -> None:
    assert pack_rows([50, 30, 80, 20, 100, 60], 100) == [[4], [2, 3], [5, 1], [0]]
    assert pack_rows([150, 10], 100) == [[0], [1]]  # too long for a row: alone, never split
    rows = pack_rows([random.Random(i).randint(1, 100) for i in range(40)], 128)
    assert sorted(i for r in rows for i in r) == list(range(40))


@pytest.mark.integration
def test_packed_batch_has_the_same_labels_and_loss_as_the_padded_one(
    tiny_llm: str, tokenizer, varied_chats: Callable[..., list[list[dict[str, str]]]]  # type: ignore[no-untyped-def]
) -> None:
    from transformers import AutoModelForCausalLM

    batch = [encode_chat(tokenizer, m, 128) for m in varied_chats(5)]
    assert all(e is not None for e in batch)
    model = AutoModelForCausalLM.from_pretrained(tiny_llm).eval()
    cpu = torch.device("cpu")
    padded = collate(batch, tokenizer.pad_token_id, cpu)  # type: ignore[arg-type]
    one_row = collate_packed(batch, tokenizer.pad_token_id, 10_000, cpu)  # type: ignore[arg-type]
    rows = collate_packed(batch, tokenizer.pad_token_id, 128, cpu)  # type: ignore[arg-type]
    assert one_row["input_ids"].shape == (1, sum(len(e.input_ids) for e in batch))  # type: ignore[union-attr]
    assert rows["input_ids"].shape[1] <= 128 and 1 < rows["input_ids"].shape[0] < len(batch)
    assert rows["input_ids"].numel() < padded["input_ids"].numel()
    with torch.no_grad():
        loss_padded, n_padded = loss_sum(model, padded)
        for packed in (one_row, rows):
            loss_packed, n_packed = loss_sum(model, packed)
            assert n_packed == n_padded > 0
            torch.testing.assert_close(loss_packed, loss_padded, rtol=1e-4, atol=1e-4)
        # the same row without position ids attends across conversation boundaries: another loss
        leaky, _ = loss_sum(model, {"input_ids": one_row["input_ids"], "labels": one_row["labels"]})
    assert abs(float(leaky) - float(loss_padded)) > 1e-2
