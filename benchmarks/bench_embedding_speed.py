"""Embedding job speed on this machine: ~2,000 real (question, passage) pairs through ``job create``.

Issue 3 requires the embedding job on ~2,000 pairs to finish in under 5 minutes on the 2-core CPU
machine. The pairs are TAT-QA questions with their relevant paragraphs (dev, then test_gold, then
PubMedQA training questions with their abstracts if more are needed), passages cut to 200 words as in
``bench_finetune_retrieval.py``. The job runs exactly as a user would start it (``create_job`` →
worker process → ``wait_job``) with the default hyper-parameters plus ``--epochs``/``--batch-size``.

Reported: job wall time (queued → succeeded, i.e. setup, held-out evaluation before and after,
training, saving and the model card), training-only pairs/s from the job's metrics, the worker's
peak RSS (``getrusage(RUSAGE_CHILDREN)`` after reaping it: the largest child, which is the worker), the CPU
count, torch threads and load average at start.

    nice .venv/bin/python benchmarks/bench_embedding_speed.py --pairs 2000 \
        --out benchmarks/results/embedding_speed.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_finetune_retrieval import pairs_from_beir  # noqa: E402


def build_pairs(data_dir: Path, work: Path, n: int) -> Path:
    """First ``n`` unique (query, positive) pairs from TAT-QA dev, TAT-QA test_gold, then PubMedQA train."""
    sources: list[tuple[Path, str]] = []
    for split in ("dev", "test"):
        folder = work / f"tatqa-{split}"
        subprocess.run([sys.executable, str(HERE / "convert_tatqa.py"), "--data-dir", str(data_dir), "--split", split,
                        "--out", str(folder)], check=True, capture_output=True)
        sources.append((folder, "test"))
    folder = work / "pubmedqa"
    subprocess.run([sys.executable, str(HERE / "convert_pubmedqa.py"), "--data-dir", str(data_dir), "--out",
                    str(folder)], check=True, capture_output=True)
    sources.append((folder, "train"))
    seen: set[str] = set()
    out = work / "pairs.jsonl"
    with out.open("w") as fh:
        for folder, split in sources:
            part = work / f"{folder.name}.pairs.jsonl"
            pairs_from_beir(folder, split, part)
            for line in part.read_text().splitlines():
                row = json.loads(line)
                key = row["query"] + "\x00" + row["positive"]
                if key not in seen and len(seen) < n:
                    seen.add(key)
                    fh.write(line + "\n")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--loss", choices=("mnrl", "cached_mnrl"), default="mnrl")
    ap.add_argument("--mini-batch-size", type=int, default=8, help="cached_mnrl only: texts per forward pass")
    ap.add_argument("--data-dir", type=Path, default=HERE.parent.parent / "shared" / "data")
    ap.add_argument("--threads", type=int, default=None,
                    help="OMP_NUM_THREADS for the job process (1 is far faster when other work shares the cores)")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "embedding_speed.json")
    a = ap.parse_args()
    work = a.workdir or Path(tempfile.mkdtemp(prefix="bench-emb-speed-"))
    work.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()
    pairs = build_pairs(a.data_dir, work, a.pairs)
    n_pairs = sum(1 for _ in pairs.open())

    os.environ["DOMAINRAG_HOME"] = str(work / "ws")
    if a.threads:
        os.environ["OMP_NUM_THREADS"] = str(a.threads)  # the worker inherits the environment
    import torch

    from domainrag.settings import Settings
    from domainrag.training.jobs import create_job, wait_job
    from domainrag.training.spec import EmbeddingJobSpec
    from domainrag.workspace import Workspace

    ws = Workspace(Settings.resolve(str(work / "ws"), None))
    hp = {"epochs": a.epochs, "batch_size": a.batch_size}
    if a.loss == "cached_mnrl":
        hp |= {"loss": a.loss, "mini_batch_size": a.mini_batch_size}
    spec = EmbeddingJobSpec(name="speed", base_model="all-minilm-l6-v2", dataset=str(pairs), hyperparameters=hp)
    t0 = time.perf_counter()
    job = wait_job(ws, create_job(ws, spec).name, timeout=3600, poll=0.5)
    wall = time.perf_counter() - t0
    with contextlib.suppress(ChildProcessError):  # reap the worker so RUSAGE_CHILDREN includes it
        os.waitpid(int(job.pid or 0), 0)
    if job.state != "succeeded":
        raise SystemExit(f"job {job.state}: {job.error}")
    metrics = job.metrics or {}
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result = {
        "command": "benchmarks/bench_embedding_speed.py " + " ".join(sys.argv[1:]),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "job_omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "load_avg_at_start": load_start,
                    "platform": platform.platform(), "cuda": torch.cuda.is_available()},
        "data": {"pairs_in_file": n_pairs, "n_train": metrics["n_train"], "n_eval_queries": metrics["n_eval"],
                 "duplicates_dropped": metrics.get("duplicates_dropped"),
                 "truncated_texts": metrics.get("truncated_texts")},
        "hyperparameters": hp,
        "job_wall_seconds": round(wall, 1),
        # when run on fewer pairs (a busy machine): every stage (evaluation corpus, training steps) grows
        # linearly with the pairs, model loading does not, so this linear projection is conservative
        "projected_2000_pairs_job_seconds": round(wall * 2000 / n_pairs, 1),
        "under_5_minutes_at_2000_pairs": (wall if n_pairs >= 2000 else wall * 2000 / n_pairs) < 300,
        "run_embedding_seconds": round(metrics["seconds"], 1),  # setup + evals + training + save
        "train_pairs_per_s": round(metrics["pairs_per_s"], 2),
        "steps": metrics["steps"],
        "worker_peak_rss_mib": round(peak_kib / 1024, 1),
        "metrics_before": metrics["metrics_before"],
        "metrics_after": metrics["metrics_after"],
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
