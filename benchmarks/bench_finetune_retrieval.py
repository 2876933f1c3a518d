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

Embedder comparison (several ``--base-model``): every base model is fine-tuned on the same pairs with
the same hyper-parameters, then one ``eval retrieval`` measures each base and fine-tuned model dense
(plus BM25 as the reference) and ``embedder_comparison_<dataset>.json`` gets per-model metrics,
training time and pairs/s. ``--max-pairs`` caps the training pairs (a seeded sample, the same for
every model) where the larger model would train too long on a CPU:

    .venv/bin/python benchmarks/bench_finetune_retrieval.py --dataset tatqa \
        --base-model all-minilm-l6-v2,all-mpnet-base-v2 --max-pairs 400 --epochs 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _machine import lscpu, version

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


def cap_pairs(path: Path, max_pairs: int | None, seed: int = 0) -> int:
    """Keep a seeded random sample of ``max_pairs`` lines (in file order), so every model trains on the same."""
    lines = path.read_text().splitlines()
    if max_pairs is None or max_pairs >= len(lines):
        return len(lines)
    keep = sorted(random.Random(seed).sample(range(len(lines)), max_pairs))
    path.write_text("".join(lines[i] + "\n" for i in keep))
    return max_pairs


def trim_beir(folder: Path, n_queries: int, extra_docs: int = 200, seed: int = 0) -> None:
    """Smoke-test size: the first ``n_queries`` test queries, their relevant documents and a seeded sample of others."""
    qrels = (folder / "qrels" / "test.tsv").read_text().splitlines()
    header, rows = qrels[0], [r.split("\t") for r in qrels[1:]]
    qids = list(dict.fromkeys(r[0] for r in rows))[:n_queries]
    rows = [r for r in rows if r[0] in set(qids)]
    corpus = (folder / "corpus.jsonl").read_text().splitlines()
    relevant = {r[1] for r in rows}
    others = [line for line in corpus if json.loads(line)["_id"] not in relevant]
    keep = [line for line in corpus if json.loads(line)["_id"] in relevant]
    keep += random.Random(seed).sample(others, min(extra_docs, len(others)))
    (folder / "corpus.jsonl").write_text("".join(line + "\n" for line in keep))
    queries = [q for q in (folder / "queries.jsonl").read_text().splitlines() if json.loads(q)["_id"] in set(qids)]
    (folder / "queries.jsonl").write_text("".join(q + "\n" for q in queries))
    (folder / "qrels" / "test.tsv").write_text("\n".join([header, *("\t".join(r) for r in rows)]) + "\n")


def model_list(values: list[str] | None) -> list[str]:
    """``--base-model a --base-model b`` or ``--base-model a,b`` → [a, b] (order kept, duplicates dropped)."""
    out: list[str] = []
    for value in values or ["all-minilm-l6-v2"]:
        out += [m.strip() for m in value.split(",") if m.strip() and m.strip() not in out]
    return out


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", choices=("tatqa", "pubmedqa"), required=True)
    ap.add_argument("--data-dir", type=Path, default=HERE.parent.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--unit", choices=("abstract", "passage"), default="abstract",
                    help="PubMedQA corpus: whole abstracts (near-saturated) or their sections")
    ap.add_argument("--base-model", action="append", default=None,
                    help="zoo embedder to fine-tune (repeat or comma list; default all-minilm-l6-v2); "
                         "two or more run the embedder comparison")
    ap.add_argument("--max-pairs", type=int, default=None,
                    help="train on a seeded sample of at most this many pairs (the same for every model)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--test-queries", type=int, default=None,
                    help="smoke test: measure on the first N test queries over their documents + 200 others")
    a = ap.parse_args()
    models = model_list(a.base_model)
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
    available_pairs = n_pairs
    if a.test_queries:
        trim_beir(test_dir, a.test_queries)
    n_pairs = cap_pairs(work / "pairs.jsonl", a.max_pairs)
    if len(models) > 1:
        compare(a, models, work, home, test_dir, split, name, available_pairs, n_pairs, t0)
        return
    t_train = time.time()
    cli(["job", "create", "--name", f"{a.dataset}-embedder", "--algorithm", "embedding", "--base-model",
         models[0], "--dataset", str(work / "pairs.jsonl"), *hps(a), "--wait"], home)
    from domainrag.workspace import Workspace

    ws = Workspace.open(home)
    job_id = ws.catalog.list("job")[-1]["name"]
    train_s = time.time() - t_train
    cli(["model", "create", "--name", f"{a.dataset}-embedder", "--source", "job", "--job-id", job_id], home)
    result_json = work / f"finetune_retrieval_{name}.full.json"  # per-query drill-down: large
    a.out.mkdir(parents=True, exist_ok=True)
    cli(["eval", "retrieval", "--index", f"{a.dataset}_base", "--dataset", str(test_dir), "--split", split, "--ingest",
         "--embedding-model", models[0], "--config", "bm25", "--config", "dense", "--config", "hybrid",
         "--config", f"dense:{a.dataset}-embedder", "--config", f"hybrid:{a.dataset}-embedder",
         "--json", str(result_json), "--report", str(work / f"finetune_retrieval_{name}.html")], home)
    result = json.loads(result_json.read_text())
    result["benchmark"] = {"command": " ".join(sys.argv), "train_pairs": n_pairs,
                           "available_pairs": available_pairs, "train_seconds": round(train_s, 1),
                           "total_seconds": round(time.time() - t0, 1), "cpus": os.cpu_count(),
                           "job_metrics": ws.catalog.get("job", job_id).get("metrics")}
    summary = summarize(result)
    (a.out / f"finetune_retrieval_{name}.json").write_text(json.dumps(summary, indent=2, default=str))
    print(json.dumps(summary, indent=2, default=str))
    print(f"full result and HTML report in {work}")


def hps(a: argparse.Namespace) -> list[str]:
    """The job hyper-parameters, identical for every base model."""
    return ["--hp", f"epochs={a.epochs}", "--hp", "eval_fraction=0.05", "--hp", f"batch_size={a.batch_size}"]


def compare(a: argparse.Namespace, models: list[str], work: Path, home: Path, test_dir: Path, split: str, name: str,
            available_pairs: int, n_pairs: int, t0: float) -> None:
    """Fine-tune every base model on the same pairs, then measure base and fine-tuned dense in one eval."""
    import torch

    from domainrag.workspace import Workspace

    load_start = os.getloadavg()
    trained: dict[str, dict] = {}
    for model in models:
        tuned = f"{a.dataset}-{slug(model)}-ft"
        t_train = time.time()
        cli(["job", "create", "--name", tuned, "--algorithm", "embedding", "--base-model", model, "--dataset",
             str(work / "pairs.jsonl"), *hps(a), "--wait"], home)
        wall = time.time() - t_train
        ws = Workspace.open(home)
        job = next(j for j in reversed(ws.catalog.list("job")) if j["name"].startswith(tuned))
        job_metrics = ws.catalog.get("job", job["name"]).get("metrics") or {}
        cli(["model", "create", "--name", tuned, "--source", "job", "--job-id", job["name"]], home)
        trained[model] = {"fine_tuned": tuned, "job_id": job["name"], "job_wall_seconds": round(wall, 1),
                          "job_metrics": job_metrics}
        print(f"{model}: trained in {wall:.0f} s ({job_metrics.get('pairs_per_s')} pairs/s)", flush=True)
    configs = ["--config", "bm25"]
    for model in models:
        base = "dense" if model == models[0] else f"dense:{model}"
        configs += ["--config", base, "--config", f"dense:{trained[model]['fine_tuned']}"]
    result_json = work / f"embedder_comparison_{name}.full.json"
    t_eval = time.time()
    cli(["eval", "retrieval", "--index", f"{a.dataset}_cmp", "--dataset", str(test_dir), "--split", split, "--ingest",
         "--embedding-model", models[0], *configs, "--json", str(result_json),
         "--report", str(work / f"embedder_comparison_{name}.html")], home)
    eval_s = time.time() - t_eval
    result = json.loads(result_json.read_text())
    runs = {r["label"]: r for r in result["retrieval"]["runs"]}
    keys = ("ndcg@10", "recall@5", "mrr@10")
    rows = []
    for model in models:
        info = trained[model]
        jm = info["job_metrics"]
        for variant, label in (("base", "dense" if model == models[0] else f"dense:{model}"),
                               ("fine-tuned", f"dense:{info['fine_tuned']}")):
            run = runs[label]
            row = {"base_model": model, "variant": variant, "label": label,
                   "dimension": jm.get("dimension"), **{k: run["metrics"].get(k) for k in keys},
                   "metrics": run["metrics"], "query_seconds": run["seconds"]}
            if variant == "fine-tuned":
                row.update({"train_seconds": jm.get("seconds"), "job_wall_seconds": info["job_wall_seconds"],
                            "train_pairs_per_s": jm.get("pairs_per_s"), "steps": jm.get("steps"),
                            "n_train": jm.get("n_train"), "n_eval": jm.get("n_eval"),
                            "held_out_before": jm.get("metrics_before"), "held_out_after": jm.get("metrics_after")})
            rows.append(row)
    summary = {
        "benchmark": "embedder comparison: base vs fine-tuned, dense retrieval",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0)),
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "load_avg_at_start": list(load_start),
                    "load_avg_at_end": list(os.getloadavg()), "lscpu": lscpu()},
        "versions": {p: version(p) for p in ("domainrag", "torch", "transformers", "sentence-transformers",
                                              "onnxruntime", "lancedb")},
        "test_queries_cap": a.test_queries,
        "training": {"pairs_available": available_pairs, "pairs_used": n_pairs, "max_pairs": a.max_pairs,
                     "pair_sample_seed": 0, "epochs": a.epochs, "batch_size": a.batch_size, "eval_fraction": 0.05,
                     "same_pairs_and_hyperparameters_for_every_model": True},
        "dataset": result["retrieval"]["dataset"],
        "eval_seconds": round(eval_s, 1),
        "total_seconds": round(time.time() - t0, 1),
        "bm25_reference": {k: runs["bm25"]["metrics"].get(k) for k in keys},
        "rows": rows,
        "eval_metadata": result.get("metadata"),
    }
    a.out.mkdir(parents=True, exist_ok=True)
    out = a.out / f"embedder_comparison_{name}.json"
    out.write_text(json.dumps(summary, indent=2, default=str))
    print("| model | variant | nDCG@10 | recall@5 | MRR@10 | train s | pairs/s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        train = f"{r['train_seconds']:.0f}" if r.get("train_seconds") else "–"
        pps = f"{r['train_pairs_per_s']:.2f}" if r.get("train_pairs_per_s") else "–"
        print(f"| {r['base_model']} | {r['variant']} | {r['ndcg@10']:.3f} | {r['recall@5']:.3f} | {r['mrr@10']:.3f} "
              f"| {train} | {pps} |")
    print(f"wrote {out}; full result and HTML report in {work}")


def summarize(result: dict) -> dict:
    """The committed summary: metrics per configuration, data set counts, timings and the command."""
    retrieval = result["retrieval"]
    return {"metadata": result.get("metadata"), "dataset": retrieval["dataset"], "benchmark": result["benchmark"],
            "runs": [{"label": r["label"], "config": r["config"], "metrics": r["metrics"], "seconds": r["seconds"]}
                     for r in retrieval["runs"]]}


if __name__ == "__main__":
    main()
