"""Does the answerability gate refuse what the documents cannot answer, without refusing what they can?

On the sample domain: one workspace (embedded index of ``src/domainrag/sample_data/docs``, embedder given by
``--embedder``, hybrid retrieval top_k 3, reader ``smollm2-135m-instruct`` on the transformers backend),
gate signals (:func:`domainrag.evaluation.gate_calibration.collect_rows`) for

* fit: the first ``--train`` questions of ``qa_train.jsonl`` (all answerable), each also with its gold
  document withheld from the passages (an unanswerable twin: the negative-rejection protocol);
* test: all of ``qa_heldout.jsonl`` (45 answerable, 5 unanswerable), answerable ones also withheld.

A gate is fitted on the fit rows for each signal set (``fit_gate``, target false refusals ``--target``) and
applied to the test rows: false refusal on answerable, refusal on the 5 unanswerable and on the withheld
twins. The uncalibrated default (dense floor) is applied to the same rows. Signals are computed once and
stored in the JSON, so the figures can be recomputed. The gate alone decides these rates: a question it
passes goes to the reader, which refuses almost nothing at this size (issue 15: 0.000 refusal on
unanswerable), so with a gate the app's refusal rates are at least these.

``--reranker`` adds the ``rerank`` signal (best cross-encoder score of the top passages): a registered
reranker or cross-encoder folder, or ``train``: a cross-encoder trained here by the product's reranker job
(``algorithm: reranker``, registered with ``model create``) on the questions of ``qa_train.jsonl`` that are
*not* in the fit split (``--train`` onward; never ``qa_heldout.jsonl``), so its scores on fit and test rows
are both out of sample. Each training question gives one positive, the passage of its gold document that
holds the question's evidence sentence, and hard negatives, the best passages of *other* documents that
the app's own hybrid retrieval returns for it: the passages a withheld-gold question is left with.

``--dataset tatqa``: the same on TAT-QA (financial report extracts): one index of the dev and test reports
(``convert_tatqa --structure``: a document per paragraph and per table), fit on ``--train`` dev questions and
test on ``--heldout`` (default 100) test questions, both seeded samples of the questions with evidence. A
question's withheld twin loses its *whole report* (table and every paragraph), not only the evidence, so
nothing left in the index can answer it. TAT-QA has no unanswerable questions of its own.

``--dataset pubmedqa``: the same on PubMedQA's 1,000 expert-labelled questions (``convert_pubmedqa``: one
document per abstract, all 1,000 in one index), fit on ``--train`` questions sampled from the 500 training
questions, test on ``--heldout`` (default 100) sampled from the official 500 test questions. The withheld twin
loses its own abstract; the other 999 abstracts (other studies, many on neighbouring topics) stay.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_gate.py --train 100 --out benchmarks/results/gate_sample.json
    PYTHONPATH=src .venv/bin/python benchmarks/bench_gate.py --train 100 --reranker train \
        --out benchmarks/results/gate_sample_reranker.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import convert_pubmedqa
import convert_tatqa
from _beir_out import DEFAULT_DATA_DIR
from _machine import lscpu, version

from domainrag.evaluation.beir import gold_docs, read_questions
from domainrag.evaluation.gate_calibration import GateRow, collect_rows, fit_gate, rates
from domainrag.serving.apps import AppSpec, create_app, load_app
from domainrag.serving.gate import DEFAULT_MIN_DENSE, decide
from domainrag.serving.models import create_model
from domainrag.serving.rag import RagApp
from domainrag.workspace import Workspace, create_index, ingest

SAMPLE = Path(__file__).resolve().parents[1] / "src" / "domainrag" / "sample_data"
SIGNAL_SETS = {"dense+bm25": ["dense", "bm25"], "dense+bm25+reader": ["dense", "bm25", "reader"],
               "reader": ["reader"], "dense": ["dense"]}
CHECK_SETS = {"check": ["check"], "dense+bm25+check": ["dense", "bm25", "check"],
              "dense+bm25+reader+check": ["dense", "bm25", "reader", "check"]}
RERANK_SETS = {"rerank": ["rerank"], "rerank+dense": ["rerank", "dense"],
               "rerank+dense+bm25": ["rerank", "dense", "bm25"], "rerank+reader": ["rerank", "reader"],
               "rerank+dense+bm25+reader": ["rerank", "dense", "bm25", "reader"]}
GATE_RERANKER = "gate-reranker"
TRAINING_INFO = "gate_reranker_training.json"


def _split(rows: list[GateRow]) -> dict[str, list[GateRow]]:
    return {"answerable": [r for r in rows if r.answerable],
            "unanswerable": [r for r in rows if not r.answerable and not r.withheld],
            "withheld": [r for r in rows if r.withheld]}


def _test_rates(refused: list[bool], rows: list[GateRow]) -> dict[str, float | None]:
    by = {"answerable": [], "unanswerable": [], "withheld": []}
    for r, ref in zip(rows, refused, strict=True):
        by["answerable" if r.answerable else "withheld" if r.withheld else "unanswerable"].append(ref)

    def mean(v: list[bool]) -> float | None:
        return round(sum(v) / len(v), 4) if v else None

    return {"false_refusal_rate": mean(by["answerable"]), "refusal_rate_unanswerable": mean(by["unanswerable"]),
            "refusal_rate_withheld": mean(by["withheld"]),
            "refusal_rate_unanswerable_and_withheld": mean(by["unanswerable"] + by["withheld"])}


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


def reranker_pairs(rag: RagApp, items: list[dict], negatives: int) -> tuple[list[dict], dict[str, int]]:
    """(query, positive, negatives) rows for the reranker job from answerable training questions.

    Positive: the gold document's passage (retrieved with a doc_id filter) sharing most words with the
    question's ``evidence`` (its top passage when there is no evidence). Negatives: the first ``negatives``
    passages of other documents in the app's hybrid retrieval for the question, as the gate sees them when
    the gold document is withheld.
    """
    rows, stats = [], {"questions": 0, "evidence_in_positive": 0, "skipped_no_gold_passage": 0}
    k = rag.retriever.config.top_k
    for q in items:
        question, gold = str(q["question"]), gold_docs(dict(q))
        if not gold:
            continue
        stats["questions"] += 1
        own = rag.retrieve(question, top_k=50, filters={"doc_id": gold})
        if not own:
            stats["skipped_no_gold_passage"] += 1
            continue
        evidence = _words(str(q.get("evidence") or ""))
        best = max(own, key=lambda h: len(evidence & _words(h.text))) if evidence else own[0]
        if evidence and evidence <= _words(best.text):
            stats["evidence_in_positive"] += 1
        others = [h.text for h in rag.retrieve(question, top_k=k + 20) if h.doc_id not in gold][:negatives]
        rows.append({"query": question, "positive": best.text, "negatives": others})
    stats["pairs"] = len(rows)
    return rows, stats


def train_reranker(ws: Workspace, rag: RagApp, items: list[dict], args: argparse.Namespace,
                   tmp: Path) -> dict:
    """Train a cross-encoder with the reranker job on ``items``, register it as GATE_RERANKER; what was done."""
    from domainrag.training.jobs import create_job, wait_job
    from domainrag.training.launch import LaunchConfig
    from domainrag.training.spec import RerankerJobSpec

    t0 = time.time()
    rows, stats = reranker_pairs(rag, items, args.reranker_negatives)
    data = tmp / "gate_reranker_pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    hp = {"loss": args.reranker_loss, "epochs": args.reranker_epochs, "batch_size": 16,
          "learning_rate": args.reranker_lr, "hard_negatives": 0, "eval_fraction": 0.1, "seed": 0}
    spec = RerankerJobSpec(name="gate-reranker", base_model=args.embedder, dataset=str(data), hyperparameters=hp,
                           launch=LaunchConfig(num_processes=1))
    t1 = time.time()
    print(f"training the gate reranker on {len(rows)} questions", file=sys.stderr)
    job = wait_job(ws, create_job(ws, spec).name, timeout=7200)
    if job.state != "succeeded":
        raise SystemExit(f"reranker job {job.state}: {job.error}")
    create_model(ws, GATE_RERANKER, job_id=job.name)
    metrics = job.metrics or {}
    info = {"base_model": args.embedder, "hyperparameters": hp, "negatives_per_question": args.reranker_negatives,
            "training_questions": f"qa_train.jsonl questions {args.train + 1}..{args.train + len(items)} "
                                  "(disjoint from the fit split; no qa_heldout.jsonl question)",
            "pairs": stats, "job_metrics": {k: metrics.get(k) for k in ("metrics_before", "metrics_after",
                                                                          "n_train", "n_eval", "n_examples")},
            "train_stats": metrics.get("train"),
            "pair_mining_s": round(t1 - t0, 1), "training_s": round(time.time() - t1, 1)}
    if args.save_reranker:  # kept: a later run can score with it (--reranker DIR) without training again
        shutil.copytree(ws.model_dir(GATE_RERANKER) / "artifact", args.save_reranker, dirs_exist_ok=True)
        (args.save_reranker / TRAINING_INFO).write_text(json.dumps(info, indent=1))
    return info


def reuse_signals(rows: list[GateRow], stored: list[dict], names: tuple[str, ...]) -> dict[str, float]:
    """Copy ``names`` signals of the same rows (id, answerable, withheld) from a previous run's JSON into ``rows``.

    Returns the largest difference between the stored and the recomputed value of each signal both have
    (dense, bm25: the check that the rows are the same questions with the same passages).
    """
    by_key = {(r["id"], r["answerable"], r["withheld"]): r for r in stored}
    diff: dict[str, float] = {}
    for row in rows:
        old = by_key[(row.question_id, row.answerable, row.withheld)]
        for name, value in row.signals.items():
            if value is not None and old.get(name) is not None:
                diff[name] = max(diff.get(name, 0.0), abs(value - old[name]))
        for name in names:
            row.signals[name] = old.get(name)
    return {k: round(v, 6) for k, v in diff.items()}


def tatqa_items(data_dir: Path, work: Path, ws: Workspace) -> dict[str, list[dict]]:
    """Index TAT-QA dev + test reports into ``docs``; questions with evidence per split, each with ``docs`` =
    every document of its report (the withheld twin loses the whole report)."""
    items: dict[str, list[dict]] = {}
    for split in ("dev", "test"):
        folder = work / f"tatqa-{split}"
        convert_tatqa.convert(data_dir, folder, split, structure=True)
        ingest(ws, "docs", [folder / "corpus.jsonl"])
        report: dict[str, list[str]] = {}
        for line in (folder / "corpus.jsonl").read_text().splitlines():
            doc = json.loads(line)
            if children := (doc.get("metadata") or {}).get("children"):  # a table: its report's paragraphs
                for uid in [doc["_id"], *children]:
                    report[uid] = [doc["_id"], *children]
        items[split] = [{**q, "docs": report[q["docs"][0]]} for q in read_questions(folder / "questions.jsonl")
                        if q.get("docs")]
    return items


def pubmedqa_items(data_dir: Path, work: Path, ws: Workspace) -> dict[str, list[dict]]:
    """Index every PubMedQA abstract into ``docs``; the questions of the training and the official test split."""
    folder = work / "pubmedqa"
    convert_pubmedqa.convert(data_dir, folder, test_split="all")
    ingest(ws, "docs", [folder / "corpus.jsonl"])
    test_ids = set(json.loads((data_dir / "pubmedqa" / "test_ground_truth.json").read_text()))
    questions = read_questions(folder / "questions.jsonl")
    return {"train": [q for q in questions if q["id"] not in test_ids],
            "test": [q for q in questions if q["id"] in test_ids]}


DATASET_NAMES = {"sample": "the sample domain", "tatqa": "TAT-QA", "pubmedqa": "PubMedQA"}


def _question_sets(args: argparse.Namespace, n_test: int) -> dict[str, str]:
    """What the fit and test rows are, for the JSON."""
    if args.dataset == "sample":
        return {"fit_questions": f"qa_train.jsonl first {args.train} + withheld-gold twins",
                "test_questions": "qa_heldout.jsonl (45 answerable, 5 unanswerable) + withheld-gold twins of the 45"}
    if args.dataset == "tatqa":
        return {"fit_questions": f"TAT-QA dev, {args.train} sampled (seed {args.seed}) + twins without their report",
                "test_questions": f"TAT-QA test_gold, {n_test} sampled + twins without their report"}
    return {"fit_questions": f"PubMedQA training split, {args.train} sampled (seed {args.seed}) + twins without "
                             "their abstract",
            "test_questions": f"PubMedQA official test split, {n_test} sampled + twins without their abstract"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", choices=("sample", "tatqa", "pubmedqa"), default="sample")
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="shared data folder (tatqa/, pubmedqa/)")
    ap.add_argument("--seed", type=int, default=0, help="TAT-QA, PubMedQA: the question samples")
    ap.add_argument("--train", type=int, default=100,
                    help="questions to fit on (qa_train.jsonl, TAT-QA dev, PubMedQA train)")
    ap.add_argument("--target", type=float, default=0.05)
    ap.add_argument("--embedder", default="all-minilm-l6-v2")
    ap.add_argument("--llm", default="smollm2-135m-instruct")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--reranker", help="rerank signal from this registered reranker / cross-encoder folder, or "
                    "'train': train one with the reranker job on qa_train.jsonl questions after the fit split")
    ap.add_argument("--reranker-train", type=int, default=None,
                    help="with --reranker train: at most this many training questions (default: all after --train)")
    ap.add_argument("--reranker-loss", choices=("bce", "mnrl"), default="bce")
    ap.add_argument("--reranker-epochs", type=int, default=1)
    ap.add_argument("--reranker-lr", type=float, default=1e-4)
    ap.add_argument("--heldout", type=int, default=None, help="only the first N test questions (pipeline checks)")
    ap.add_argument("--save-reranker", type=Path, help="with --reranker train: copy the trained reranker here")
    ap.add_argument("--reader-from", type=Path,
                    help="take the reader signal of the same rows from this earlier bench_gate.py JSON instead of "
                    "running the reader (dense and bm25 are recomputed and compared with it)")
    ap.add_argument("--reranker-negatives", type=int, default=3, help="hard negatives per training question")
    ap.add_argument("--note", default="", help="how the machine was shared during the run (stored in the JSON)")
    ap.add_argument("--reader-signals", default="reader",
                    help="comma-separated signals read from the reader's logits: reader (not-found margin), "
                    "check (yes/no: do the passages state the answer?)")
    args = ap.parse_args()
    reader_signals = [s for s in args.reader_signals.split(",") if s]
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace.open(Path(tmp) / "ws")
        create_index(ws, "docs", args.embedder, "embedded")
        if args.dataset != "sample":
            if args.reranker == "train":
                raise SystemExit("--reranker train trains on the sample domain only; pass a reranker folder")
            if args.dataset == "tatqa":
                public = tatqa_items(args.data_dir, Path(tmp), ws)
                fit_pool, test_pool = public["dev"], public["test"]
            else:
                public = pubmedqa_items(args.data_dir, Path(tmp), ws)
                fit_pool, test_pool = public["train"], public["test"]
            rng = random.Random(args.seed)
            splits = [("fit", rng.sample(fit_pool, min(args.train, len(fit_pool)))),
                      ("test", rng.sample(test_pool, min(args.heldout or 100, len(test_pool))))]
        else:
            ingest(ws, "docs", [SAMPLE / "docs"])
            splits = [("fit", read_questions(SAMPLE / "qa_train.jsonl")[: args.train]),
                      ("test", read_questions(SAMPLE / "qa_heldout.jsonl")[: args.heldout or None])]
        create_app(ws, AppSpec.model_validate({"name": "qa", "model": args.llm, "retrieval": {
            "vector_store": "embedded", "index": "docs", "top_k": 3, "mode": "hybrid"}}))
        rag = load_app(ws, "qa")
        features = ["dense", "bm25", *reader_signals]
        timings = {}
        rows = {}
        scorer, reranker_info = None, None
        if args.reranker == "train":
            pool = read_questions(SAMPLE / "qa_train.jsonl")[args.train:]
            reranker_info = train_reranker(ws, rag, pool[: args.reranker_train or None], args, Path(tmp))
            scorer = ws.reranker(GATE_RERANKER)
        elif args.reranker:
            scorer = ws.reranker(args.reranker)
            saved = Path(args.reranker) / TRAINING_INFO
            reranker_info = {"reranker": args.reranker,
                             **(json.loads(saved.read_text()) if saved.is_file() else {})}
        if scorer is not None:
            features = ["rerank", *features]
        stored = json.loads(args.reader_from.read_text())["rows"] if args.reader_from else None
        if stored and "reader" in features:
            features.remove("reader")
        reused = {}
        for name, items in splits:
            t1 = time.time()
            rows[name] = collect_rows(rag, items, features=features, reranker=scorer,
                                      progress=lambda d, n, s=name: print(f"\r{s}: {d}/{n}", end="", file=sys.stderr))
            print(file=sys.stderr)
            timings[name] = round(time.time() - t1, 1)
            if stored:
                reused[name] = reuse_signals(rows[name], stored[name], ("reader",))
    results = {}
    signal_sets = {**SIGNAL_SETS, **(RERANK_SETS if scorer is not None else {}),
                   **(CHECK_SETS if "check" in reader_signals else {})}
    available = set(rows["fit"][0].signals) if rows["fit"] else set()
    for label, signals in signal_sets.items():
        if not set(signals) <= available:
            continue
        cal = fit_gate(rows["fit"], args.target, features=signals)
        refused = [(cal.probability(r.signals) or 0.0) < cal.threshold for r in rows["test"]]
        results[label] = {"features": cal.features, "threshold": round(cal.threshold, 4),
                          "weights": [round(w, 3) for w in cal.weights], "fit": rates(cal, rows["fit"]),
                          "test": _test_rates(refused, rows["test"])}
    default = [not decide(None, r.signals).answerable for r in rows["test"]]
    results[f"uncalibrated default (dense >= {DEFAULT_MIN_DENSE})"] = {"test": _test_rates(default, rows["test"])}
    out = {
        "benchmark": f"answerability gate on {DATASET_NAMES[args.dataset]}",
        "command": "PYTHONPATH=src .venv/bin/python " + " ".join(sys.argv),
        "note": args.note,
        "setup": {"embedder": args.embedder, "llm": args.llm, "retrieval": "hybrid top_k 3", "target": args.target,
                  **_question_sets(args, len(splits[1][1])),
                  "counts": {k: {c: len(v) for c, v in _split(r).items()} for k, r in rows.items()}},
        "reranker": reranker_info,
        "reader_signal_from": None if not stored else {
            "file": str(args.reader_from), "max_abs_diff_of_recomputed_signals": reused},
        "results": results,
        "signal_seconds": timings,
        "rows": {k: [{"id": r.question_id, "answerable": r.answerable, "withheld": r.withheld, **r.signals}
                     for r in v] for k, v in rows.items()},
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "lscpu": lscpu(),
                    "threads": os.environ.get("OMP_NUM_THREADS")},
        "versions": {p: version(p) for p in ("torch", "transformers", "sentence-transformers", "scikit-learn")},
        "elapsed_s": round(time.time() - t0, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    for label, r in results.items():
        print(f"{label:40s} {r['test']}")


if __name__ == "__main__":
    main()
