"""Shape of the quickstart's SFT data: what packing, max_seq_len and the labelled-only LM head can save.

Tokenizes the sample domain's RAFT chats with the quickstart model and reports, at the quickstart's
settings: conversation lengths (and how many ``max_seq_len`` cuts), the share of labelled (assistant)
tokens — the positions the loss needs from the LM head — and the padding share of random batches of
``--batch-size`` (what padding-free packing would save). No training; seconds to run.

    /work/main/.venv/bin/python benchmarks/bench_sft_data_shape.py --out benchmarks/results/sft_data_shape.json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-model", default="smollm2-135m-instruct")
    ap.add_argument("--max-seq-len", type=int, default=384)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "sft_data_shape.json")
    a = ap.parse_args(argv)

    from transformers import AutoTokenizer

    from domainrag.data.formats import read_chat_dataset
    from domainrag.data.sample import sample_paths
    from domainrag.training.sft_data import IGNORE_INDEX, encode_chat
    from domainrag.zoo import resolve_llm

    sys.path.insert(0, str(HERE))
    from _machine import version

    tok = AutoTokenizer.from_pretrained(resolve_llm(a.base_model))
    chats = read_chat_dataset(sample_paths().sft_chat)
    full = [e for e in (encode_chat(tok, m, 1_000_000) for m in chats) if e is not None]
    cut = [e for e in (encode_chat(tok, m, a.max_seq_len) for m in chats) if e is not None]
    lengths = [len(e.input_ids) for e in cut]
    labelled = sum(sum(1 for x in e.labels if x != IGNORE_INDEX) for e in cut)
    order = list(range(len(cut)))
    random.Random(0).shuffle(order)
    batches = [order[i : i + a.batch_size] for i in range(0, len(order), a.batch_size)]
    computed = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    report = {
        "benchmark": "sft_data_shape",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "versions": {"transformers": version("transformers")},
        "setup": {"data": "sample domain sft_chat.jsonl", "base_model": a.base_model, "max_seq_len": a.max_seq_len,
                  "batch_size": a.batch_size},
        "conversations": len(cut),
        "tokens_mean": round(statistics.mean(lengths), 1),
        "tokens_max": max(lengths),
        "tokens_max_uncut": max(len(e.input_ids) for e in full),
        "cut_by_max_seq_len": sum(1 for e in full if len(e.input_ids) > a.max_seq_len),
        "labelled_share": round(labelled / sum(lengths), 4),
        "padding_share": round(1 - sum(lengths) / computed, 4),
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
