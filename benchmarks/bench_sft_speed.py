"""SFT training throughput and peak memory: SmolLM2-135M LoRA, padding-free packing on and off.

Each configuration runs in its own process (so ``ru_maxrss`` is that run's peak) through
:func:`domainrag.training.sft.run_sft` on real, variable-length chats: PubMedQA training questions
with their abstract as context, in the serving prompt layout (the ``sft`` data of
``bench_pubmedqa_sft.py``). Reported per configuration:

* ``tokens_per_s``: real (non-padding) tokens through forward + backward per second of the training
  loop — "trained tokens/s"; ``labelled_tokens_per_s`` counts only the assistant tokens with a loss;
* ``padding_share``: share of computed positions that were padding (0 with packing);
* ``peak_rss_mib``: ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of the process (model load included).

    nice .venv/bin/python benchmarks/bench_sft_speed.py --steps 8 --out benchmarks/results/sft_speed.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def run_one(a: argparse.Namespace) -> dict[str, Any]:
    """One training run in this process; returns its measurements."""
    import torch

    sys.path.insert(0, str(HERE))
    from bench_pubmedqa_sft import load_split, write_sft_data

    from domainrag.training.reporting import MemoryReporter
    from domainrag.training.sft import SFTArgs, run_sft
    from domainrag.zoo import resolve_llm

    torch.set_num_threads(a.threads)
    entries, train_ids, _ = load_split(a.data_dir)
    work = Path(tempfile.mkdtemp(prefix="bench-sft-speed-"))
    ids = train_ids[: a.steps * a.batch_size]
    if a.context:
        n = write_sft_data(entries, ids, work / "chat.jsonl", conclusion=True)
    else:  # short closed-book chats: question → label and conclusion
        from domainrag.data.raft import write_chat_jsonl

        n = len(ids)
        write_chat_jsonl(
            [
                [
                    {"role": "user", "content": entries[p]["QUESTION"]},
                    {"role": "assistant", "content": f"{entries[p]['final_decision']}. {entries[p]['LONG_ANSWER']}"},
                ]
                for p in ids
            ],
            work / "chat.jsonl",
        )
    args = SFTArgs(
        base_model=resolve_llm(a.base_model),
        dataset=work / "chat.jsonl",
        output_dir=work / "out",
        max_steps=a.steps,
        batch_size=a.batch_size,
        lora_layers=a.lora_layers,
        max_seq_len=a.max_seq_len,
        eval_fraction=0.0,
        packing=a.packing,
    )
    run_sft(args, MemoryReporter())
    m = json.loads((work / "out" / "adapter" / "domainrag_sft.json").read_text())["metrics"]
    secs = m["train_seconds"]
    return {
        "data": "question + abstract" if a.context else "question only",
        "packing": a.packing,
        "lora_layers": a.lora_layers,
        "examples": n,
        "steps": m["steps"],
        "batch_size": a.batch_size,
        "train_seconds": round(secs, 1),
        "tokens": m["tokens"],
        "padded_tokens": m["padded_tokens"],
        "labelled_tokens": m["labelled_tokens"],
        "tokens_per_s": round(m["tokens"] / secs, 1),
        "labelled_tokens_per_s": round(m["labelled_tokens"] / secs, 1),
        "padding_share": round(1 - m["tokens"] / m["padded_tokens"], 3),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=HERE.parent.parent / "shared" / "data")
    ap.add_argument("--base-model", default="smollm2-135m-instruct")
    ap.add_argument("--steps", type=int, default=8, help="optimizer steps per configuration")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--max-seq-len", type=int, default=512)
    ap.add_argument("--lora-layers", type=int, nargs="+", default=[0], help="0 = all layers; several = a sweep")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy 2-core box)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "sft_speed.json")
    ap.add_argument(
        "--data",
        nargs="+",
        default=["context", "short"],
        choices=["context", "short"],
        help="context: question + abstract (~400-500 tokens); short: question only (~60-120)",
    )
    ap.add_argument("--packing", action="store_true", help=argparse.SUPPRESS)  # worker mode only
    ap.add_argument("--context", action="store_true", help=argparse.SUPPRESS)  # worker mode only
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        a.lora_layers = a.lora_layers[0] or None
        print("RESULT " + json.dumps(run_one(a)), flush=True)
        return

    import torch
    import transformers

    load = os.getloadavg()[0]
    runs = []
    for data, layers, packing in itertools.product(a.data, a.lora_layers, (False, True)):
        cmd = [
            sys.executable,
            __file__,
            "--worker",
            "--data-dir",
            str(a.data_dir),
            "--base-model",
            a.base_model,
            "--steps",
            str(a.steps),
            "--batch-size",
            str(a.batch_size),
            "--max-seq-len",
            str(a.max_seq_len),
            "--lora-layers",
            str(layers),
            "--threads",
            str(a.threads),
        ] + (["--packing"] if packing else [])
        cmd += ["--context"] if data == "context" else []
        proc = subprocess.run(cmd, capture_output=True, text=True)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if proc.returncode != 0 or line is None:
            raise SystemExit(f"run failed ({' '.join(cmd)}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
        runs.append(json.loads(line[len("RESULT ") :]))
        print(runs[-1], flush=True)
    report = {
        "benchmark": "sft_speed",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": time.strftime("%Y-%m-%d"),
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": a.threads,
            "load_at_start": round(load, 2),
            "platform": platform.platform(),
        },
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "setup": {
            "base_model": a.base_model,
            "data": "PubMedQA training questions (+ abstract in the serving layout for 'context')",
            "max_seq_len": a.max_seq_len,
            "lora_r": 16,
            "target_modules": "q,k,v,o",
        },
        "runs": runs,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(report, indent=2) + "\n")
    print("| data | LoRA layers | packing | tokens/s | labelled tokens/s | padding share | peak RSS MiB |")
    print("|---|---|---|---:|---:|---:|---:|")
    for r in runs:
        print(
            f"| {r['data']} | {r['lora_layers'] or 'all'} | {'on' if r['packing'] else 'off'} | {r['tokens_per_s']} | "
            f"{r['labelled_tokens_per_s']} | {r['padding_share']} | {r['peak_rss_mib']} |"
        )


if __name__ == "__main__":
    main()
