"""SFT: the old hand-written torch loop vs TRL's SFTTrainer, same data, same steps, same machine, one run.

The old loop is taken from git history (``--old-rev``, the last commit that had it: ``git archive`` of
its ``src/`` into a temporary folder), the trainer path from this checkout; each runs in its own
process with ``PYTHONPATH`` pointing at its source, one after the other or (``--parallel``, for a shared
machine whose load changes over time) both at once. Data: the sample domain's RAFT chats
(``sft_chat.jsonl``), at the quickstart's SFT settings unless overridden. Reported per implementation:

* ``tokens_per_s``: real (non-padding) tokens through forward + backward per second of training;
* ``steps_per_s`` and ``train_seconds`` (the training loop only, evaluation excluded);
* ``heldout_loss_before`` / ``heldout_loss_after``: one common measure for both, computed after the run
  by this script: token-weighted mean assistant-token loss over the held-out split (the same split in
  both, ``split_train_eval``), base model vs base + saved adapter, fp32, one conversation at a time.

    nice /work/main/.venv/bin/python benchmarks/bench_sft_trainer.py --out benchmarks/results/sft_trainer_vs_loop.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OLD_REV = "7b5ed76"  # last commit with the hand-written loop (training/sft_fit.py before SFTTrainer)


def heldout_loss(base_model: str, adapter: Path | None, dataset: Path, max_seq_len: int, eval_fraction: float,
                 seed: int) -> float:
    """Token-weighted mean assistant-token loss on the held-out split (base, or base + adapter)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from domainrag.data.formats import read_chat_dataset
    from domainrag.training.sft_data import IGNORE_INDEX, encode_chat, split_train_eval

    tok = AutoTokenizer.from_pretrained(base_model)
    kept = [e for e in (encode_chat(tok, m, max_seq_len) for m in read_chat_dataset(dataset)) if e is not None]
    _, eval_idx = split_train_eval(len(kept), eval_fraction, seed)
    model = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, adapter)
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in eval_idx:
            ids = torch.tensor([kept[i].input_ids])
            labels = torch.tensor([kept[i].labels])
            logits = model(input_ids=ids, use_cache=False).logits[0, :-1].float()
            target = labels[0, 1:]
            loss = torch.nn.functional.cross_entropy(logits, target, ignore_index=IGNORE_INDEX, reduction="sum")
            total, count = total + float(loss), count + int((target != IGNORE_INDEX).sum())
    return total / max(count, 1)


def run_one(a: argparse.Namespace) -> dict[str, Any]:
    """One training run with whatever ``domainrag`` is on the path; returns its measurements."""
    import torch

    from domainrag.data.sample import sample_paths
    from domainrag.training.reporting import MemoryReporter
    from domainrag.training.sft import SFTArgs, run_sft
    from domainrag.zoo import resolve_llm

    torch.set_num_threads(a.threads)
    work = Path(tempfile.mkdtemp(prefix="bench-sft-trainer-"))
    base = resolve_llm(a.base_model)
    data = sample_paths().sft_chat
    args = SFTArgs(
        base_model=base,
        dataset=data,
        output_dir=work / "out",
        epochs=1,
        max_steps=a.steps,
        batch_size=a.batch_size,
        learning_rate=a.learning_rate,
        lora_layers=a.lora_layers or None,
        max_seq_len=a.max_seq_len,
        eval_fraction=a.eval_fraction,
        precision="fp32",
        packing=a.packing,
    )
    t0 = time.perf_counter()
    result = run_sft(args, MemoryReporter())
    wall = time.perf_counter() - t0
    m = json.loads((result.adapter_dir / "domainrag_sft.json").read_text())["metrics"]
    secs = m["train_seconds"]
    return {
        "steps": m["steps"],
        "train_seconds": round(secs, 1),
        "wall_seconds": round(wall, 1),
        "steps_per_s": round(m["steps"] / secs, 4),
        "tokens": m["tokens"],
        "padded_tokens": m["padded_tokens"],
        "labelled_tokens": m["labelled_tokens"],
        "tokens_per_s": round(m["tokens"] / secs, 1),
        "own_eval_loss_before": m["eval_loss_before"],
        "own_eval_loss_after": m["eval_loss_after"],
        "heldout_loss_before": round(heldout_loss(base, None, data, a.max_seq_len, a.eval_fraction, 0), 4),
        "heldout_loss_after": round(
            heldout_loss(base, result.adapter_dir, data, a.max_seq_len, a.eval_fraction, 0), 4
        ),
    }


def old_source(rev: str) -> Path:
    """``src/`` of ``rev`` extracted from git into a temporary folder."""
    dest = Path(tempfile.mkdtemp(prefix="bench-sft-old-"))
    archive = dest / "src.tar"
    subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(archive), rev, "src"], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    return dest / "src"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-model", default="smollm2-135m-instruct")
    ap.add_argument("--steps", type=int, default=12, help="optimizer steps (the quickstart's fast mode: 12)")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--learning-rate", type=float, default=4e-4)
    ap.add_argument("--lora-layers", type=int, default=12, help="0 = all layers")
    ap.add_argument("--max-seq-len", type=int, default=384)
    ap.add_argument("--eval-fraction", type=float, default=0.05)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--packing", action="store_true", help="padding-free packing in both implementations")
    ap.add_argument("--parallel", action="store_true",
                    help="run both at the same time, so on a shared machine both see the same load")
    ap.add_argument("--old-rev", default=OLD_REV, help="git revision with the hand-written loop")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "sft_trainer_vs_loop.json")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        print("RESULT " + json.dumps(run_one(a)), flush=True)
        return

    sys.path.insert(0, str(HERE))
    from _machine import lscpu, version

    sources = {"old_loop": old_source(a.old_rev), "sft_trainer": ROOT / "src"}
    forwarded = [
        f"--base-model={a.base_model}", f"--steps={a.steps}", f"--batch-size={a.batch_size}",
        f"--learning-rate={a.learning_rate}", f"--lora-layers={a.lora_layers}", f"--max-seq-len={a.max_seq_len}",
        f"--eval-fraction={a.eval_fraction}", f"--threads={a.threads}", *(["--packing"] if a.packing else []),
    ]
    load = os.getloadavg()[0]
    runs: dict[str, Any] = {}
    procs: dict[str, subprocess.Popen[str]] = {}
    for name, src in sources.items():
        env = {**os.environ, "PYTHONPATH": str(src), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(a.threads)}
        cmd = [sys.executable, __file__, "--worker", *forwarded]
        procs[name] = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                       cwd=ROOT)
        if not a.parallel:
            procs[name].wait()
    for name, proc in procs.items():
        out, err = proc.communicate()
        line = next((x for x in out.splitlines() if x.startswith("RESULT ")), None)
        if proc.returncode != 0 or line is None:
            raise SystemExit(f"{name} failed:\n{out[-2000:]}\n{err[-3000:]}")
        runs[name] = json.loads(line[len("RESULT ") :])
        print(name, runs[name], flush=True)
    report = {
        "benchmark": "sft_trainer_vs_loop",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "note": "contended 2-core machine shared with other jobs; compare the two runs side by side only"
        + ("; both ran at the same time (--parallel), sharing that load" if a.parallel else ""),
        "machine": {**lscpu(), "load_at_start": round(load, 2), "torch_threads": a.threads},
        "versions": {p: version(p) for p in ("torch", "transformers", "trl", "peft", "accelerate")},
        "setup": {
            "data": "sample domain sft_chat.jsonl (RAFT chats)",
            "base_model": a.base_model,
            "steps": a.steps,
            "batch_size": a.batch_size,
            "learning_rate": a.learning_rate,
            "lora_layers": a.lora_layers,
            "max_seq_len": a.max_seq_len,
            "eval_fraction": a.eval_fraction,
            "precision": "fp32",
            "packing": a.packing,
            "parallel": a.parallel,
            "old_rev": a.old_rev,
        },
        "runs": runs,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(report, indent=2) + "\n")
    print("| implementation | steps/s | tokens/s | held-out loss before | after |")
    print("|---|---:|---:|---:|---:|")
    for name, r in runs.items():
        print(f"| {name} | {r['steps_per_s']} | {r['tokens_per_s']} | {r['heldout_loss_before']} | "
              f"{r['heldout_loss_after']} |")


if __name__ == "__main__":
    main()
