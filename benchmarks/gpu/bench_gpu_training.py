"""One-GPU training throughput: LoRA SFT of the largest installed LLM, and the embedding job on 2,000 pairs.

Prints (and writes to ``--out``) tokens/s of the SFT run, pairs/s of the embedding run and the peak GPU
memory of each; sized to finish in under 8 minutes on one H100-class GPU (model conversion included).
Without CUDA it says so and exits with status 0 (nothing to measure), so it is safe to run anywhere.

* SFT: the sample domain's RAFT chats (``sft_chat.jsonl``), bf16 LoRA (r 16 on q,k,v,o of every layer),
  ``--steps`` optimizer steps of ``--batch-size`` chats, through :func:`domainrag.training.sft.run_sft`
  (TRL's SFTTrainer). "Largest" = the installed zoo LLM with the most weight bytes (``--llm`` overrides).
* Embedding: all-MiniLM-L6-v2 on 2,000 distinct (query, passage) pairs built from the sample domain's
  pairs (each pair numbered, so none is a duplicate), one epoch, batch 64, bf16.

    python benchmarks/gpu/bench_gpu_training.py --out benchmarks/results/gpu_training.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def largest_llm() -> str:
    """The installed zoo LLM with the most weight bytes on disk (without converting any)."""
    from domainrag.zoo import BASE_MODELS

    def size(packages: tuple[str, ...]) -> int:
        total = 0
        for package in packages:
            spec = importlib.util.find_spec(package)
            for root in (spec.submodule_search_locations or []) if spec else []:
                total += sum(p.stat().st_size for p in Path(root).rglob("*") if p.is_file())
        return total

    llms = [m for m in BASE_MODELS.values() if m.kind == "llm" and m.installed]
    if not llms:
        raise SystemExit("no zoo LLM is installed")
    return max(llms, key=lambda m: size(m.packages)).name


def bench_sft(a: argparse.Namespace, work: Path) -> dict[str, Any]:
    import torch

    from domainrag.data.sample import sample_paths
    from domainrag.training.reporting import MemoryReporter
    from domainrag.training.sft import SFTArgs, run_sft
    from domainrag.zoo import resolve_llm

    name = a.llm or largest_llm()
    t0 = time.perf_counter()
    base = resolve_llm(name)
    prepare = time.perf_counter() - t0
    torch.cuda.reset_peak_memory_stats()
    args = SFTArgs(base_model=base, dataset=sample_paths().sft_chat, output_dir=work / "sft", epochs=100,
                   max_steps=a.steps, batch_size=a.batch_size, max_seq_len=a.max_seq_len, learning_rate=2e-4,
                   eval_fraction=0.05, precision="bf16", finetuning="lora",
                   gradient_checkpointing=a.gradient_checkpointing)
    result = run_sft(args, MemoryReporter(echo=a.verbose))
    m = json.loads((result.adapter_dir / "domainrag_sft.json").read_text())["metrics"]
    return {
        "model": name,
        "prepare_seconds": round(prepare, 1),
        "steps": m["steps"],
        "train_seconds": round(m["train_seconds"], 1),
        "tokens_per_s": round(m["tokens_per_s"], 1),
        "eval_loss_before": m["eval_loss_before"],
        "eval_loss_after": m["eval_loss_after"],
        "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
    }


def bench_embedding(a: argparse.Namespace, work: Path) -> dict[str, Any]:
    import torch

    from domainrag.data.sample import sample_paths
    from domainrag.training.embedding import EmbeddingArgs, run_embedding
    from domainrag.training.reporting import MemoryReporter
    from domainrag.zoo import resolve_embedder

    base_pairs = [json.loads(line) for line in sample_paths().pairs.read_text().splitlines() if line.strip()]
    rows = [
        {"query": f"{p['query']} (case {i})", "positive": f"Case {i}. {p['positive']}"}
        for i, p in ((i, base_pairs[i % len(base_pairs)]) for i in range(a.pairs))
    ]
    data = work / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    torch.cuda.reset_peak_memory_stats()
    args = EmbeddingArgs(base_model=resolve_embedder("all-minilm-l6-v2"), dataset=data, output_dir=work / "emb",
                         epochs=1, batch_size=64, eval_fraction=0.05, precision="bf16")
    t0 = time.perf_counter()
    result = run_embedding(args, MemoryReporter(echo=a.verbose))
    return {
        "pairs": a.pairs,
        "n_train": result.n_train,
        "steps": result.steps,
        "seconds": round(time.perf_counter() - t0, 1),
        "pairs_per_s": round(result.pairs_per_s, 1),
        "ndcg@10_before": result.metrics_before.get("ndcg@10"),
        "ndcg@10_after": result.metrics_after.get("ndcg@10"),
        "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llm", default=None, help="zoo LLM name (default: the largest installed)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-seq-len", type=int, default=512)
    ap.add_argument("--gradient-checkpointing", action="store_true")
    ap.add_argument("--pairs", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    ap.add_argument("--verbose", action="store_true", help="echo the training logs")
    a = ap.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print("bench_gpu_training: no CUDA GPU visible; nothing to measure (run it on a GPU machine)")
        return 0
    sys.path.insert(0, str(HERE.parent))
    from _machine import version

    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        t0 = time.perf_counter()
        sft = bench_sft(a, Path(tmp))
        print(f"SFT LoRA {sft['model']}: {sft['steps']} steps, {sft['tokens_per_s']} tokens/s, "
              f"peak GPU memory {sft['peak_gpu_memory_gib']} GiB, held-out loss "
              f"{sft['eval_loss_before']:.3f} -> {sft['eval_loss_after']:.3f}", flush=True)
        emb = bench_embedding(a, Path(tmp))
        print(f"embedding all-minilm-l6-v2: {emb['pairs']} pairs, {emb['pairs_per_s']} pairs/s, "
              f"peak GPU memory {emb['peak_gpu_memory_gib']} GiB", flush=True)
        total = time.perf_counter() - t0
    print(f"total {total:.0f} s")
    if a.out is not None:
        report = {
            "benchmark": "gpu_training",
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "gpu": torch.cuda.get_device_name(0),
            "versions": {p: version(p) for p in ("torch", "transformers", "trl", "peft", "sentence-transformers")},
            "sft": sft,
            "embedding": emb,
            "total_seconds": round(total, 1),
        }
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
