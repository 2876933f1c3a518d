"""Does fine-tuning the embedder help on real public data? Base vs fine-tuned vs BM25 vs hybrid.

Trains on the training split and measures on the test split, entirely through the domainrag CLI
(so the benchmark also exercises the product):

* TAT-QA: embedder trained on dev questions → their relevant paragraphs; measured on test_gold.
* PubMedQA: embedder trained on the 500 training questions → their abstracts; measured on the
  500 official test questions, retrieved among all 1,000 abstracts. ``--unit passage``: the corpus
  is the 3,358 abstract sections, every section of a question's abstract is relevant, and training
  pairs are (question, one of its sections).

    .venv/bin/python benchmarks/bench_finetune_retrieval.py --dataset tatqa --out benchmarks/results
    .venv/bin/python benchmarks/bench_finetune_retrieval.py --dataset pubmedqa --out benchmarks/results
    .venv/bin/python benchmarks/bench_finetune_retrieval.py --dataset pubmedqa --unit passage
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def cli(args: list[str], home: Path) -> str:
    env = {**os.environ, "DOMAINRAG_HOME": str(home), "COLUMNS": "160"}
    proc = subprocess.run([sys.executable, "-m", "domainrag.cli.main", *args], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"domainrag {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


def pairs_from_beir(folder: Path, split: str, out: Path) -> int:
    """(query, positive passage) pairs from a BEIR folder's qrels split."""
    corpus = {d["_id"]: d for d in map(json.loads, (folder / "corpus.jsonl").read_text().splitlines())}
    queries = {q["_id"]: q["text"] for q in map(json.loads, (folder / "queries.jsonl").read_text().splitlines())}
    n = 0
    with out.open("w") as fh:
        for line in (folder / "qrels" / f"{split}.tsv").read_text().splitlines()[1:]:
            qid, did, score = line.split("\t")
            if int(score) > 0 and qid in queries and did in corpus:
                text = corpus[did]["text"]
                fh.write(json.dumps({"query": queries[qid], "positive": " ".join(text.split()[:200])}) + "\n")
                n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", choices=("tatqa", "pubmedqa"), required=True)
    ap.add_argument("--data-dir", type=Path, default=HERE.parent.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--unit", choices=("abstract", "passage"), default="abstract",
                    help="PubMedQA corpus: whole abstracts (near-saturated) or their sections")
    a = ap.parse_args()
    if a.unit != "abstract" and a.dataset != "pubmedqa":
        ap.error("--unit is a PubMedQA option")
    name = a.dataset if a.unit == "abstract" else f"{a.dataset}_{a.unit}"  # names the result files
    work = a.workdir or Path(tempfile.mkdtemp(prefix=f"bench-{a.dataset}-"))
    home = work / "ws"
    t0 = time.time()
    if a.dataset == "tatqa":
        train_dir, test_dir = work / "tatqa-dev", work / "tatqa-test"
        for split, folder in (("dev", train_dir), ("test", test_dir)):
            subprocess.run([sys.executable, str(HERE / "convert_tatqa.py"), "--data-dir", str(a.data_dir), "--split",
                            split, "--out", str(folder)], check=True, capture_output=True)
        n_pairs = pairs_from_beir(train_dir, "test", work / "pairs.jsonl")
        split = "test"
    else:
        test_dir = work / "pubmedqa"
        subprocess.run([sys.executable, str(HERE / "convert_pubmedqa.py"), "--data-dir", str(a.data_dir), "--out",
                        str(test_dir), "--unit", a.unit], check=True, capture_output=True)
        n_pairs = pairs_from_beir(test_dir, "train", work / "pairs.jsonl")
        split = "test"
    t_train = time.time()
    cli(["job", "create", "--name", f"{a.dataset}-embedder", "--algorithm", "embedding", "--base-model",
         "all-minilm-l6-v2", "--dataset", str(work / "pairs.jsonl"), "--hp", f"epochs={a.epochs}",
         "--hp", "eval_fraction=0.05", "--hp", "batch_size=32", "--wait"], home)
    from domainrag.workspace import Workspace

    ws = Workspace.open(home)
    job_id = ws.catalog.list("job")[-1]["name"]
    train_s = time.time() - t_train
    cli(["model", "create", "--name", f"{a.dataset}-embedder", "--source", "job", "--job-id", job_id], home)
    result_json = work / f"finetune_retrieval_{name}.full.json"  # per-query drill-down: large
    a.out.mkdir(parents=True, exist_ok=True)
    cli(["eval", "retrieval", "--index", f"{a.dataset}_base", "--dataset", str(test_dir), "--split", split, "--ingest",
         "--embedding-model", "all-minilm-l6-v2", "--config", "bm25", "--config", "dense", "--config", "hybrid",
         "--config", f"dense:{a.dataset}-embedder", "--config", f"hybrid:{a.dataset}-embedder",
         "--json", str(result_json), "--report", str(work / f"finetune_retrieval_{name}.html")], home)
    result = json.loads(result_json.read_text())
    result["benchmark"] = {"command": " ".join(sys.argv), "train_pairs": n_pairs, "train_seconds": round(train_s, 1),
                           "total_seconds": round(time.time() - t0, 1), "cpus": os.cpu_count(),
                           "job_metrics": ws.catalog.get("job", job_id).get("metrics")}
    summary = summarize(result)
    (a.out / f"finetune_retrieval_{name}.json").write_text(json.dumps(summary, indent=2, default=str))
    print(json.dumps(summary, indent=2, default=str))
    print(f"full result and HTML report in {work}")


def summarize(result: dict) -> dict:
    """The committed summary: metrics per configuration, data set counts, timings and the command."""
    retrieval = result["retrieval"]
    return {"metadata": result.get("metadata"), "dataset": retrieval["dataset"], "benchmark": result["benchmark"],
            "runs": [{"label": r["label"], "config": r["config"], "metrics": r["metrics"], "seconds": r["seconds"]}
                     for r in retrieval["runs"]]}


if __name__ == "__main__":
    main()
