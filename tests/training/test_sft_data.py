"""SFT data: assistant-only labels, split, and our rows through TRL's padding and padding-free collators."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from domainrag.training.dp_debug import DEBUG_IDS_ENV
from domainrag.training.sft_data import (
    IGNORE_INDEX,
    CountingCollator,
    EncodedChat,
    encode_chat,
    split_train_eval,
    to_dataset,
)

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


@pytest.mark.integration
def test_padding_free_batch_has_the_same_labels_and_loss_as_the_padded_one(
    tiny_llm: str, tokenizer, varied_chats: Callable[..., list[list[dict[str, str]]]]  # type: ignore[no-untyped-def]
) -> None:
    """TRL's two collators on our rows: packing (padding-free) trains on exactly what padding does."""
    from transformers import AutoModelForCausalLM
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    chats = [encode_chat(tokenizer, m, 128) for m in varied_chats(5)]
    assert all(e is not None for e in chats)
    rows = [{"input_ids": e.input_ids, "labels": e.labels} for e in chats]  # type: ignore[union-attr]
    padded = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id)(rows)
    packed = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id, padding_free=True)(rows)
    assert packed["input_ids"].shape == (1, sum(len(e.input_ids) for e in chats))  # type: ignore[union-attr]
    assert packed["input_ids"].numel() < padded["input_ids"].numel()
    assert int((packed["labels"] != IGNORE_INDEX).sum()) == int((padded["labels"] != IGNORE_INDEX).sum()) > 0
    model = AutoModelForCausalLM.from_pretrained(tiny_llm).eval()
    keys = ("input_ids", "labels", "attention_mask", "position_ids")
    with torch.no_grad():  # use_cache=False as in training: with a cache transformers ignores packed position ids
        loss_padded = model(**{k: padded[k] for k in keys if k in padded}, use_cache=False).loss
        loss_packed = model(**{k: packed[k] for k in keys if k in packed}, use_cache=False).loss
        # the same row without position ids attends across conversation boundaries: another loss
        leaky = model(input_ids=packed["input_ids"], labels=packed["labels"], use_cache=False).loss
    torch.testing.assert_close(loss_packed, loss_padded, rtol=1e-4, atol=1e-4)
    assert abs(float(leaky) - float(loss_padded)) > 1e-3  # 10x the tolerance of the equality above


def test_counting_collator_counts_training_rows_and_records_ids(
    tmp_path, monkeypatch: pytest.MonkeyPatch  # type: ignore[no-untyped-def]
) -> None:
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    monkeypatch.setenv(DEBUG_IDS_ENV, str(tmp_path))
    monkeypatch.setenv("RANK", "1")
    collate = CountingCollator(DataCollatorForLanguageModeling(pad_token_id=0))
    rows = to_dataset([EncodedChat([5, 6, 7], [IGNORE_INDEX, 6, 7]), EncodedChat([8, 9], [IGNORE_INDEX, 9])], True)
    batch = collate([dict(r) for r in rows])
    assert "example_id" not in batch and batch["input_ids"].shape == (2, 3)
    assert (collate.tokens, collate.padded, collate.labelled) == (5, 6, 3)
    collate([dict(r) for r in to_dataset([EncodedChat([1, 2], [IGNORE_INDEX, 2])])])  # eval rows: not counted
    assert collate.tokens == 5
    assert (tmp_path / "rank-1.txt").read_text() == "0\n1\n"
