"""LoRA SFT: assistant-only labels, RAFT examples, loss going down, exact resume, merge."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
import torch

from domainrag.data.prompts import NOT_FOUND_ANSWER, extract_citations
from domainrag.data.raft import build_rag_sft_examples, write_chat_jsonl
from domainrag.training.reporting import MemoryReporter
from domainrag.training.sft import (
    IGNORE_INDEX,
    SFTArgs,
    encode_chat,
    micro_batch_indices,
    run_sft,
    split_train_eval,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def smollm_path() -> str:
    from domainrag.zoo import resolve_llm

    return resolve_llm("smollm2-135m-instruct")


@pytest.fixture(scope="module")
def tokenizer(smollm_path: str):  # type: ignore[no-untyped-def]
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm_path)


@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory: pytest.TempPathFactory, tokenizer) -> str:  # type: ignore[no-untyped-def]
    """A 2-layer random Llama with SmolLM2's tokenizer and chat template: fast, real architecture."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    folder = tmp_path_factory.mktemp("tiny-llm")
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def _chat_file(path: Path, n: int = 24, seed: int = 0) -> Path:
    """Synthetic, learnable chats: a fixed answer pattern the base model cannot know."""
    rng = random.Random(seed)
    examples = []
    for _ in range(n):
        a, b = rng.randint(2, 60), rng.randint(2, 60)
        examples.append(
            [
                {"role": "user", "content": f"Status code of widget {a}-{b}?"},
                {"role": "assistant", "content": f"Widget {a}-{b} reports code ZX-{a + b}."},
            ]
        )
    return write_chat_jsonl(examples, path)


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
# RAFT examples

QA = [
    {
        "question": f"What is the limit of part {i}?",
        "answer": f"The limit is {i} bar.",
        "doc": f"doc{i % 4}",
        "evidence": f"Part {i} is rated to {i} bar.",
    }
    for i in range(12)
]
CHUNKS = {
    f"doc{d}": [f"Intro text of doc{d}."]
    + [f"Section: Part {i} is rated to {i} bar. More." for i in range(12) if i % 4 == d]
    for d in range(4)
}


def test_raft_examples_cite_the_gold_passage() -> None:
    examples = build_rag_sft_examples(QA, CHUNKS, n_distractors=3, p_withhold=0.0, seed=1)
    assert examples == build_rag_sft_examples(QA, CHUNKS, n_distractors=3, p_withhold=0.0, seed=1)
    for item, messages in zip(QA, examples, strict=True):
        assert [m["role"] for m in messages] == ["system", "user", "assistant"]
        user, answer = messages[1]["content"], messages[2]["content"]
        assert user.count("<<<") == 4 and f"Question: {item['question']}" in user
        valid, invalid = extract_citations(answer, 4)
        assert len(valid) == 1 and not invalid
        k = valid[0]
        block = user.split(f"[{k}] (source: {item['doc']})\n<<<\n", 1)[1].split("\n>>>", 1)[0]
        assert block == next(c for c in CHUNKS[item["doc"]] if item["evidence"] in c)  # the surrounding chunk
        assert answer == item["answer"][:-1] + f" [{k}]."
        sources = [line for line in user.splitlines() if line.startswith("[")]
        assert sum(item["doc"] in s for s in sources) == 1  # distractors come from other docs


def test_raft_withholding_teaches_refusal() -> None:
    refused = build_rag_sft_examples(QA, None, p_withhold=1.0, seed=0)
    assert all(m[-1]["content"] == NOT_FOUND_ANSWER for m in refused)
    assert all(qa["evidence"] not in m[1]["content"] for qa, m in zip(QA, refused, strict=True))
    mixed = build_rag_sft_examples(QA * 10, None, p_withhold=0.2, seed=0)
    share = sum(m[-1]["content"] == NOT_FOUND_ANSWER for m in mixed) / len(mixed)
    assert 0.1 < share < 0.3
    # without chunks the evidence itself is the gold passage
    kept = build_rag_sft_examples(QA, None, p_withhold=0.0, seed=0)
    assert all(qa["evidence"] in m[1]["content"] for qa, m in zip(QA, kept, strict=True))


# ---------------------------------------------------------------------------------------------
# Training


class _StopAt(MemoryReporter):
    """Simulates a crash (pre-emption) right after optimizer step ``stop``."""

    def __init__(self, stop: int) -> None:
        super().__init__()
        self.stop = stop

    def metric(self, step: int, **values: float) -> None:
        super().metric(step, **values)
        if step == self.stop and "loss" in values:
            raise KeyboardInterrupt(f"stopped at {step}")


def _adapter_weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


@pytest.mark.integration
def test_resume_after_crash_matches_uninterrupted_run(tiny_llm: str, tmp_path: Path) -> None:
    data = _chat_file(tmp_path / "chat.jsonl", n=20)

    def args(name: str, **kw: object) -> SFTArgs:
        return SFTArgs(
            base_model=tiny_llm,
            dataset=data,
            output_dir=tmp_path / name,
            max_steps=10,
            batch_size=3,
            grad_accum=2,
            learning_rate=5e-3,
            max_seq_len=64,
            checkpoint_dir=tmp_path / f"{name}-ckpt",
            save_every=4,
            **kw,  # type: ignore[arg-type]
        )

    full = run_sft(args("full"), MemoryReporter())

    crashed = _StopAt(6)
    with pytest.raises(KeyboardInterrupt):
        run_sft(args("resumed"), crashed)
    assert [m["step"] for m in crashed.metrics if "loss" in m] == [1, 2, 3, 4, 5, 6]

    reporter = MemoryReporter()
    resumed = run_sft(args("resumed", resume=True, merge=True), reporter)
    assert resumed.resumed_from == 4
    assert [m["step"] for m in reporter.metrics if "loss" in m] == [5, 6, 7, 8, 9, 10]
    assert resumed.steps == full.steps == 10
    assert resumed.eval_loss_before == full.eval_loss_before
    assert resumed.train_loss_first == full.train_loss_first
    a, b = _adapter_weights(full.adapter_dir), _adapter_weights(resumed.adapter_dir)
    assert a.keys() == b.keys() and len(a) > 0
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    assert resumed.train_loss_last == pytest.approx(full.train_loss_last, rel=1e-5)

    # merged model: plain transformers folder that reproduces the adapter's outputs
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    assert resumed.merged_dir is not None and (resumed.merged_dir / "model.safetensors").exists()
    merged = AutoModelForCausalLM.from_pretrained(resumed.merged_dir).eval()
    base = AutoModelForCausalLM.from_pretrained(tiny_llm)
    with_adapter = PeftModel.from_pretrained(base, resumed.adapter_dir).eval()
    x = torch.tensor([[1, 520, 9531, 198, 81, 34]])
    with torch.no_grad():
        torch.testing.assert_close(merged(input_ids=x).logits, with_adapter(input_ids=x).logits, rtol=1e-4, atol=1e-4)


@pytest.mark.integration
def test_resume_refuses_a_different_dataset(tiny_llm: str, tmp_path: Path) -> None:
    from domainrag.errors import DomainRagError

    ckpt = tmp_path / "ckpt"
    first = SFTArgs(
        base_model=tiny_llm,
        dataset=_chat_file(tmp_path / "a.jsonl", seed=1),
        output_dir=tmp_path / "a",
        max_steps=2,
        batch_size=4,
        max_seq_len=64,
        checkpoint_dir=ckpt,
        save_every=1,
    )
    run_sft(first, MemoryReporter())
    other = SFTArgs(**{**first.__dict__, "dataset": _chat_file(tmp_path / "b.jsonl", seed=2), "resume": True})
    with pytest.raises(DomainRagError, match="different data"):
        run_sft(other, MemoryReporter())


@pytest.mark.integration
@pytest.mark.slow
def test_sft_lowers_assistant_loss_on_smollm2(smollm_path: str, tmp_path: Path) -> None:
    args = SFTArgs(
        base_model=smollm_path,
        dataset=_chat_file(tmp_path / "chat.jsonl", n=24),
        output_dir=tmp_path / "out",
        max_steps=12,
        batch_size=2,
        learning_rate=1e-3,
        max_seq_len=96,
        eval_fraction=0.2,
        warmup_ratio=0.0,
    )
    reporter = MemoryReporter()
    result = run_sft(args, reporter)
    assert result.steps == 12 and result.n_eval == 5
    assert result.eval_loss_before is not None and result.eval_loss_after is not None
    assert result.eval_loss_after < 0.6 * result.eval_loss_before
    assert result.train_loss_last < result.train_loss_first
    assert result.tokens_per_s > 0
    losses = [m for m in reporter.metrics if "loss" in m]
    assert [m["step"] for m in losses] == list(range(1, 13)) and all("learning_rate" in m for m in losses)
    config = json.loads((result.adapter_dir / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == smollm_path
    meta = json.loads((result.adapter_dir / "domainrag_sft.json").read_text())
    assert meta["args"]["lora_r"] == 16 and meta["metrics"]["eval_loss_after"] == result.eval_loss_after
    assert (result.adapter_dir / "tokenizer.json").exists() and result.merged_dir is None


# ---------------------------------------------------------------------------------------------
# Packing


def _varied_chats(n: int, seed: int = 0) -> list[list[dict[str, str]]]:
    """Chats of clearly different lengths, so padding would be substantial."""
    rng = random.Random(seed)
    chats = []
    for i in range(n):
        filler = " ".join(f"w{rng.randint(0, 99)}" for _ in range(rng.randint(1, 30)))
        chats.append(
            [
                {"role": "user", "content": f"Item {i}: {filler}?"},
                {"role": "assistant", "content": f"Code ZX-{i * 7 % 50}."},
            ]
        )
    return chats


@pytest.mark.integration
def test_packed_batch_has_the_same_labels_and_loss_as_the_padded_one(tiny_llm: str, tokenizer) -> None:  # type: ignore[no-untyped-def]
    from transformers import AutoModelForCausalLM

    from domainrag.training.sft import _collate, _collate_packed, _loss_sum

    batch = [encode_chat(tokenizer, m, 128) for m in _varied_chats(5)]
    assert all(e is not None for e in batch)
    model = AutoModelForCausalLM.from_pretrained(tiny_llm).eval()
    cpu = torch.device("cpu")
    padded = _collate(batch, tokenizer.pad_token_id, cpu)  # type: ignore[arg-type]
    one_row = _collate_packed(batch, tokenizer.pad_token_id, 10_000, cpu)  # type: ignore[arg-type]
    rows = _collate_packed(batch, tokenizer.pad_token_id, 128, cpu)  # type: ignore[arg-type]
    assert one_row["input_ids"].shape == (1, sum(len(e.input_ids) for e in batch))  # type: ignore[union-attr]
    assert rows["input_ids"].shape[1] <= 128 and 1 < rows["input_ids"].shape[0] < len(batch)
    assert rows["input_ids"].numel() < padded["input_ids"].numel()
    with torch.no_grad():
        loss_padded, n_padded = _loss_sum(model, padded)
        for packed in (one_row, rows):
            loss_packed, n_packed = _loss_sum(model, packed)
            assert n_packed == n_padded > 0
            torch.testing.assert_close(loss_packed, loss_padded, rtol=1e-4, atol=1e-4)
        # the same row without position ids attends across conversation boundaries: another loss
        leaky, _ = _loss_sum(model, {"input_ids": one_row["input_ids"], "labels": one_row["labels"]})
    assert abs(float(leaky) - float(loss_padded)) > 1e-2


@pytest.mark.integration
def test_packed_training_sees_the_same_assistant_tokens_and_learns(tiny_llm: str, tmp_path: Path) -> None:
    data = write_chat_jsonl(_varied_chats(24, seed=1), tmp_path / "chat.jsonl")

    def run(packing: bool) -> dict[str, object]:
        args = SFTArgs(
            base_model=tiny_llm,
            dataset=data,
            output_dir=tmp_path / f"out-{packing}",
            max_steps=12,
            batch_size=4,
            learning_rate=2e-2,
            max_seq_len=160,  # rows of up to 160 tokens hold two or three of these chats
            eval_fraction=0.2,
            lora_dropout=0.0,  # dropout masks depend on the tensor shapes, which packing changes
            packing=packing,
            precision="fp32",  # compared to 1e-3 below: bf16 rounding differs between the two batch shapes
        )
        run_sft(args, MemoryReporter())
        return json.loads((tmp_path / f"out-{packing}" / "adapter" / "domainrag_sft.json").read_text())["metrics"]

    packed, padded = run(True), run(False)
    assert packed["labelled_tokens"] == padded["labelled_tokens"] > 0
    assert packed["tokens"] == padded["tokens"]
    assert packed["padded_tokens"] < padded["padded_tokens"]  # type: ignore[operator]
    assert packed["eval_loss_after"] < packed["eval_loss_before"] - 0.3  # type: ignore[operator]
    # same batches, same labels, isolated attention: the same training up to float rounding
    assert packed["eval_loss_after"] == pytest.approx(padded["eval_loss_after"], rel=1e-3)


@pytest.mark.integration
def test_packing_is_refused_when_attention_would_cross_conversations(
    tiny_llm: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import transformers.masking_utils as masking

    from domainrag.errors import DomainRagError

    # simulate an architecture without packed-sequence masks: plain causal attention over the row
    monkeypatch.setattr(masking, "find_packed_sequence_indices", lambda position_ids: None)
    args = SFTArgs(
        base_model=tiny_llm, dataset=_chat_file(tmp_path / "c.jsonl", n=4), output_dir=tmp_path / "o", packing=True
    )
    with pytest.raises(DomainRagError, match="packing is not supported"):
        run_sft(args, MemoryReporter())


def test_pack_rows_first_fit_decreasing() -> None:
    from domainrag.training.sft import pack_rows

    assert pack_rows([50, 30, 80, 20, 100, 60], 100) == [[4], [2, 3], [5, 1], [0]]
    assert pack_rows([150, 10], 100) == [[0], [1]]  # too long for a row: alone, never split
    rows = pack_rows([random.Random(i).randint(1, 100) for i in range(40)], 128)
    assert sorted(i for r in rows for i in r) == list(range(40))


# ---------------------------------------------------------------------------------------------
# Early stopping


@pytest.mark.integration
def test_early_stopping_restores_the_best_adapter_and_resumes_exactly(tiny_llm: str, tmp_path: Path) -> None:
    data = _chat_file(tmp_path / "chat.jsonl", n=20)

    def args(name: str, **kw: object) -> SFTArgs:
        # min_delta is so large that no evaluation after the first counts as an improvement:
        # evaluations at steps 2 and 4, patience 1 → stop at step 4 of 10, keep step 2's adapter
        return SFTArgs(
            base_model=tiny_llm,
            dataset=data,
            output_dir=tmp_path / name,
            max_steps=10,
            batch_size=4,
            learning_rate=5e-3,
            max_seq_len=64,
            eval_fraction=0.2,
            eval_every=2,
            early_stopping_patience=1,
            early_stopping_min_delta=100.0,
            checkpoint_dir=tmp_path / f"{name}-ckpt",
            save_every=3,
            **kw,  # type: ignore[arg-type]
        )

    reporter = MemoryReporter()
    full = run_sft(args("full"), reporter)
    meta = json.loads((full.adapter_dir / "domainrag_sft.json").read_text())["metrics"]
    assert full.steps == 4 and meta["stop_reason"] == "early_stopping"
    assert "did not improve" in meta["stop_detail"] and meta["restored_best_step"] == meta["best_step"] == 2
    evals = {m["step"]: m["eval_loss"] for m in reporter.metrics if "eval_loss" in m}
    assert set(evals) == {0, 2, 4} and full.eval_loss_after == evals[2] == meta["best_eval_loss"]
    assert [m["step"] for m in reporter.metrics if "loss" in m] == [1, 2, 3, 4]

    # crash after step 3 (checkpoint at 3), then after the stop itself (checkpoint at 4): both resume
    # to the same decision and the same restored weights as the uninterrupted run
    for stop, expected_from in ((3, 3), (4, 4)):
        name = f"crash{stop}"
        with pytest.raises(KeyboardInterrupt):
            run_sft(args(name), _StopAt(stop))
        resumed = run_sft(args(name, resume=True), MemoryReporter())
        assert resumed.resumed_from == expected_from and resumed.steps == 4
        assert resumed.eval_loss_after == full.eval_loss_after
        a, b = _adapter_weights(full.adapter_dir), _adapter_weights(resumed.adapter_dir)
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)


def test_sft_hyperparameters_are_checked_before_training() -> None:
    from domainrag.errors import DomainRagError
    from domainrag.training.sft_params import check_sft_hyperparameters

    assert check_sft_hyperparameters({"packing": True, "eval_every": 5, "early_stopping_patience": 2}).packing
    with pytest.raises(DomainRagError, match=r"unknown SFT hyper-parameter.*no_such") as err:
        check_sft_hyperparameters({"no_such": 1})
    assert "early_stopping_patience" in str(err.value)  # the hint lists the valid names
    with pytest.raises(DomainRagError, match="eval_every is not set"):
        check_sft_hyperparameters({"early_stopping_patience": 2})
    with pytest.raises(DomainRagError, match="eval_fraction is 0"):
        check_sft_hyperparameters({"early_stopping_patience": 2, "eval_every": 5, "eval_fraction": 0})
    with pytest.raises(DomainRagError, match="'batch_size' must be an integer"):
        check_sft_hyperparameters({"batch_size": "4"})
    with pytest.raises(DomainRagError, match="'early_stopping_min_delta'"):
        check_sft_hyperparameters({"early_stopping_min_delta": -0.1})
    with pytest.raises(DomainRagError, match=r"unknown SFT hyper-parameter.*base_model"):
        check_sft_hyperparameters({"base_model": "x"})  # set by the job, not a hyper-parameter


# ---------------------------------------------------------------------------------------------
# Bad input refused by `job create`


def test_sft_job_refuses_bad_input_before_it_starts(ws, tmp_path: Path, tiny_llm: str) -> None:  # type: ignore[no-untyped-def]
    from domainrag.errors import DatasetError, DomainRagError, StorageError
    from domainrag.training.jobs import JobSpec, create_job

    good = _chat_file(tmp_path / "chat.jsonl", n=4)

    def create(**kw: object) -> None:
        fields: dict[str, object] = {"name": "sft", "algorithm": "sft", "base_model": tiny_llm, "dataset": str(good)}
        create_job(ws, JobSpec(**{**fields, **kw}), start=False)  # type: ignore[arg-type]

    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(DatasetError, match="empty"):
        create(dataset=str(empty))
    columns = tmp_path / "columns.jsonl"
    columns.write_text('{"question": "q", "reply": "a"}\n')
    with pytest.raises(DatasetError, match="unrecognised chat record") as err:
        create(dataset=str(columns))
    assert err.value.line == 1
    encoder = tmp_path / "encoder"
    encoder.mkdir()
    (encoder / "config.json").write_text('{"architectures": ["BertModel"], "model_type": "bert"}')
    with pytest.raises(DomainRagError, match=r"not a causal language model \(BertModel"):
        create(base_model=str(encoder))
    no_template = tmp_path / "no-template"
    no_template.mkdir()
    (no_template / "config.json").write_text((Path(tiny_llm) / "config.json").read_text())
    with pytest.raises(DomainRagError, match="no chat template"):
        create(base_model=str(no_template))
    with pytest.raises(DomainRagError, match="unknown SFT hyper-parameter"):
        create(hyperparameters={"epoch": 2})
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(StorageError):
        create(output=str(blocker / "out"))  # a path under a regular file cannot be written
    assert ws.catalog.list("job") == []
    create()  # the same spec with good inputs is accepted
    assert len(ws.catalog.list("job")) == 1


def test_model_card_says_why_training_stopped(tmp_path: Path) -> None:
    from domainrag.training.jobs import JobSpec
    from domainrag.training.worker import write_model_card

    data = _chat_file(tmp_path / "chat.jsonl", n=2)
    spec = JobSpec(name="sft", algorithm="sft", base_model="smollm2-135m-instruct", dataset=str(data))
    detail = "early stopping at step 4: held-out loss did not improve"
    write_model_card(tmp_path, spec, data, {"stop_reason": "early_stopping", "stop_detail": detail})
    card = json.loads((tmp_path / "model_card.json").read_text())
    assert card["stopped"] == {"reason": "early_stopping", "detail": detail}
    assert f"- training stopped: {detail}" in (tmp_path / "README.md").read_text()
