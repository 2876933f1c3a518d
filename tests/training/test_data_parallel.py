"""Data parallelism proven, not configured: the real job under ``accelerate launch --num_processes 2`` on CPU.

Each algorithm runs as a job with two processes (torchrun, gloo) and the debug hooks of
:mod:`domainrag.training.dp_debug` on. What only real data parallelism gives is asserted: the two
processes trained on disjoint halves of the examples, their weights are bit-identical after every
optimizer step, one artifact and one model card are written, the log and metrics are not doubled;
for SFT, ``job resume`` continues from a checkpoint the two processes wrote before a simulated crash.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from domainrag.data.raft import write_chat_jsonl
from domainrag.training.dp_debug import CRASH_ENV, DEBUG_IDS_ENV
from domainrag.training.jobs import create_job, start_job, wait_job
from domainrag.training.launch import LaunchConfig
from domainrag.training.spec import parse_job_spec

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N = 16  # training examples: 2 processes x batch 4 x 2 steps = one epoch exactly, so no batch is padded


def _sft_data(path: Path) -> Path:
    chats = [
        [{"role": "user", "content": f"Code of widget {i}?"}, {"role": "assistant", "content": f"ZX-{i * 7}."}]
        for i in range(N)
    ]
    return write_chat_jsonl(chats, path)


def _pairs_data(path: Path) -> Path:
    rows = [{"query": f"what does fault K{i:03d} mean?", "positive": f"Fault K{i:03d}: valve {i} stuck.",
             "negative": f"Fault K{(i + 1) % N:03d}: valve {(i + 1) % N} stuck."} for i in range(N)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _read_lines(folder: Path, kind: str, rank: int) -> list[str]:
    path = folder / f"{kind}-{rank}.txt"
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.parametrize("algorithm", ["sft", "embedding", "reranker"])
def test_two_processes_split_the_data_and_agree_on_the_weights(
    algorithm: str, ws, tmp_path: Path, tiny_llm: str, monkeypatch: pytest.MonkeyPatch  # type: ignore[no-untyped-def]
) -> None:
    debug = tmp_path / "debug"
    monkeypatch.setenv(DEBUG_IDS_ENV, str(debug))
    if algorithm == "sft":
        base, data = tiny_llm, _sft_data(tmp_path / "chat.jsonl")
        # save at step 1 and crash right after it: the resume below continues from the 2-process checkpoint
        hp = {"max_steps": 2, "batch_size": 4, "eval_fraction": 0.0, "save_every": 1, "max_seq_len": 64,
              "precision": "fp32", "lora_dropout": 0.0}
        monkeypatch.setenv(CRASH_ENV, "1")
    else:
        base, data = "all-minilm-l6-v2", _pairs_data(tmp_path / "pairs.jsonl")
        hp = {"epochs": 1, "batch_size": 4, "eval_fraction": 0.0, "precision": "fp32"}
        if algorithm == "reranker":
            hp |= {"hard_negatives": 0, "in_batch_negatives": 1}
    spec = parse_job_spec({"name": f"dp-{algorithm}", "algorithm": algorithm, "base_model": base,
                           "dataset": str(data), "hyperparameters": hp, "launch": LaunchConfig(num_processes=2)})
    record = create_job(ws, spec)
    final = wait_job(ws, record.name, timeout=600)
    prefix = f"jobs/{record.name}"

    if algorithm == "sft":  # the simulated pre-emption after the checkpoint of step 1
        assert final.state == "failed" and "debug crash" in (final.error or "")
        ckpt = ws.lake.local_path(f"{prefix}/checkpoints")
        assert {p.name for p in ckpt.glob("checkpoint-*")} == {"checkpoint-1"}
        # one RNG state per process: the checkpoint is the two processes' own
        assert {p.name for p in (ckpt / "checkpoint-1").glob("rng_state_*.pth")} == {"rng_state_0.pth",
                                                                                   "rng_state_1.pth"}
        monkeypatch.delenv(CRASH_ENV)
        first = [_read_lines(debug, "rank", r)[:4] for r in (0, 1)]  # step 1's batch (the loader reads ahead)
        first_digests = [_read_lines(debug, "digest", r) for r in (0, 1)]
        debug = tmp_path / "debug-resumed"
        monkeypatch.setenv(DEBUG_IDS_ENV, str(debug))
        start_job(ws, record.name, resume=True)
        final = wait_job(ws, record.name, timeout=600)
    assert final.state == "succeeded", final.error

    # each process trained on its own half: disjoint, equal shares, together every example
    ids = [_read_lines(debug, "rank", r) for r in (0, 1)]
    if algorithm == "sft":  # the resumed run trains step 2 only, on the examples step 1 did not have
        assert final.metrics["resumed_from"] == 1 and final.metrics["steps"] == 2
        ids = [first[r] + ids[r] for r in (0, 1)]
    assert len(ids[0]) == len(ids[1]) == N // 2
    assert not set(ids[0]) & set(ids[1]) and len(set(ids[0]) | set(ids[1])) == N

    # identical trainable weights on both processes after every optimizer step
    digests = [_read_lines(debug, "digest", r) for r in (0, 1)]
    if algorithm == "sft":
        digests = [first_digests[r] + digests[r] for r in (0, 1)]
        assert [d.split()[0] for d in digests[0]] == ["1", "2"]
    assert digests[0] and digests[0] == digests[1]
    assert len({d.split()[1] for d in digests[0]}) == len(digests[0])  # and they do change step to step

    # one artifact, one model card (written by rank 0), one catalogue record
    job_dir = ws.lake.local_path(prefix)
    cards = list(job_dir.rglob("model_card.json"))
    assert len(cards) == 1 and ws.lake.exists(f"{final.artifact_key}/model_card.json")
    assert len(ws.catalog.list("job")) == 1

    # logs and metrics once, not once per process
    log = (job_dir / "log.txt").read_text()
    runs = 2 if algorithm == "sft" else 1
    assert log.count(f"job {record.name}: {algorithm}") == runs
    assert log.count("succeeded; artifact at") == 1
    steps = [json.loads(line)["step"] for line in (job_dir / "metrics.jsonl").read_text().splitlines()
             if "loss" in json.loads(line)]
    assert steps == sorted(set(steps)) and steps[-1] == final.metrics["steps"]
