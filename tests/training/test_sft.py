"""LoRA SFT on TRL's SFTTrainer: RAFT examples, loss going down, exact resume, packing, early stopping, merge."""

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
from domainrag.training.sft import SFTArgs, run_sft

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytestmark = pytest.mark.usefixtures("one_thread")


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


@pytest.mark.integration
def test_packed_training_sees_the_same_assistant_tokens_and_learns(tiny_llm: str, tmp_path: Path, varied_chats) -> None:  # type: ignore[no-untyped-def]
    data = write_chat_jsonl(varied_chats(24, seed=1), tmp_path / "chat.jsonl")

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


# ---------------------------------------------------------------------------------------------
# Early stopping


@pytest.mark.integration
def test_early_stopping_restores_the_best_adapter_and_resumes_exactly(tiny_llm: str, tmp_path: Path) -> None:
    data = _chat_file(tmp_path / "chat.jsonl", n=20)

    def args(name: str, **kw: object) -> SFTArgs:
        # min_delta is so large that no evaluation after the first counts as an improvement:
        # evaluations at steps 2 and 4, patience 1 → stop at step 4 of 10, keep the better of the two
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
    assert "did not improve" in meta["stop_detail"]
    evals = [(m["step"], m["eval_loss"]) for m in reporter.metrics if "eval_loss" in m]
    assert [s for s, _ in evals] == [0, 2, 4, 4]  # before, periodic at 2 and 4, after (the restored adapter)
    # the Trainer restores the lowest held-out loss (min_delta only decides patience)
    best_step, best_loss = min(evals[1:3], key=lambda e: e[1])
    assert meta["restored_best_step"] == meta["best_step"] == best_step
    assert full.eval_loss_after == pytest.approx(best_loss, rel=1e-6) and evals[-1][1] == full.eval_loss_after
    assert [m["step"] for m in reporter.metrics if "loss" in m] == [1, 2, 3, 4]

    # crash after step 3 and right after step 4's log, before its evaluation: checkpoints are written at
    # every evaluation (step 2) so both resume from step 2 to the same decision and the same weights
    for stop in (3, 4):
        name = f"crash{stop}"
        with pytest.raises(KeyboardInterrupt):
            run_sft(args(name), _StopAt(stop))
        resumed = run_sft(args(name, resume=True), MemoryReporter())
        assert resumed.resumed_from == 2 and resumed.steps == 4
        assert resumed.eval_loss_after == pytest.approx(full.eval_loss_after, rel=1e-5)
        a, b = _adapter_weights(full.adapter_dir), _adapter_weights(resumed.adapter_dir)
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Bad input refused by `job create`


def test_sft_job_refuses_bad_input_before_it_starts(ws, tmp_path: Path, tiny_llm: str) -> None:  # type: ignore[no-untyped-def]
    from domainrag.errors import DatasetError, DomainRagError, StorageError
    from domainrag.training.jobs import create_job
    from domainrag.training.spec import parse_job_spec

    good = _chat_file(tmp_path / "chat.jsonl", n=4)

    def create(**kw: object) -> None:
        fields: dict[str, object] = {"name": "sft", "algorithm": "sft", "base_model": tiny_llm, "dataset": str(good)}
        create_job(ws, parse_job_spec({**fields, **kw}), start=False)

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


# ---------------------------------------------------------------------------------------------
# Fine-tuning methods


@pytest.mark.integration
def test_full_finetuning_trains_every_weight_and_saves_a_plain_model(tiny_llm: str, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    args = SFTArgs(base_model=tiny_llm, dataset=_chat_file(tmp_path / "c.jsonl", n=8), output_dir=tmp_path / "o",
                   finetuning="full", max_steps=2, batch_size=4, max_seq_len=64, learning_rate=1e-3,
                   eval_fraction=0.0, gradient_checkpointing=True, precision="fp32")
    result = run_sft(args, MemoryReporter())
    assert result.adapter_dir.name == "model" and not (result.adapter_dir / "adapter_config.json").exists()
    before = load_file(str(Path(tiny_llm) / "model.safetensors"))
    after = load_file(str(result.adapter_dir / "model.safetensors"))
    changed = [k for k in before if k in after and not torch.equal(before[k], after[k])]
    assert len(changed) == len(before)  # every tensor moved, embeddings and norms included
    meta = json.loads((result.adapter_dir / "domainrag_sft.json").read_text())
    assert meta["kind"] == "sft-full" and meta["args"]["gradient_checkpointing"] is True


def test_qlora_without_cuda_is_a_clear_error(tiny_llm: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from domainrag.errors import DomainRagError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args = SFTArgs(base_model=tiny_llm, dataset=_chat_file(tmp_path / "c.jsonl", n=4), output_dir=tmp_path / "o",
                   finetuning="qlora")
    with pytest.raises(DomainRagError, match="qlora needs a CUDA GPU"):
        run_sft(args, MemoryReporter())
