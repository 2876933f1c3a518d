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

    PYTHONPATH=src .venv/bin/python benchmarks/bench_gate.py --train 100 --out benchmarks/results/gate_sample.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from _machine import lscpu, version

from domainrag.evaluation.beir import read_questions
from domainrag.evaluation.gate_calibration import GateRow, collect_rows, fit_gate, rates
from domainrag.serving.apps import AppSpec, create_app, load_app
from domainrag.serving.gate import DEFAULT_MIN_DENSE, decide
from domainrag.workspace import Workspace, create_index, ingest

SAMPLE = Path(__file__).resolve().parents[1] / "src" / "domainrag" / "sample_data"
SIGNAL_SETS = {"dense+bm25": ["dense", "bm25"], "dense+bm25+reader": ["dense", "bm25", "reader"],
               "reader": ["reader"], "dense": ["dense"]}


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", type=int, default=100, help="questions of qa_train.jsonl to fit on")
    ap.add_argument("--target", type=float, default=0.05)
    ap.add_argument("--embedder", default="all-minilm-l6-v2")
    ap.add_argument("--llm", default="smollm2-135m-instruct")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace.open(Path(tmp) / "ws")
        create_index(ws, "docs", args.embedder, "embedded")
        ingest(ws, "docs", [SAMPLE / "docs"])
        create_app(ws, AppSpec.model_validate({"name": "qa", "model": args.llm, "retrieval": {
            "vector_store": "embedded", "index": "docs", "top_k": 3, "mode": "hybrid"}}))
        rag = load_app(ws, "qa")
        features = ["dense", "bm25", "reader"]
        timings = {}
        rows = {}
        for name, path, limit in (("fit", SAMPLE / "qa_train.jsonl", args.train),
                                  ("test", SAMPLE / "qa_heldout.jsonl", None)):
            t1 = time.time()
            items = read_questions(path)[: limit or None]
            rows[name] = collect_rows(rag, items, features=features,
                                      progress=lambda d, n, s=name: print(f"\r{s}: {d}/{n}", end="", file=sys.stderr))
            print(file=sys.stderr)
            timings[name] = round(time.time() - t1, 1)
    results = {}
    for label, signals in SIGNAL_SETS.items():
        cal = fit_gate(rows["fit"], args.target, features=signals)
        refused = [(cal.probability(r.signals) or 0.0) < cal.threshold for r in rows["test"]]
        results[label] = {"features": cal.features, "threshold": round(cal.threshold, 4),
                          "weights": [round(w, 3) for w in cal.weights], "fit": rates(cal, rows["fit"]),
                          "test": _test_rates(refused, rows["test"])}
    default = [not decide(None, r.signals).answerable for r in rows["test"]]
    results[f"uncalibrated default (dense >= {DEFAULT_MIN_DENSE})"] = {"test": _test_rates(default, rows["test"])}
    out = {
        "benchmark": "answerability gate on the sample domain",
        "command": "PYTHONPATH=src .venv/bin/python " + " ".join(sys.argv),
        "note": "run on a shared 2-core machine under heavy load from other jobs: timings are not comparable",
        "setup": {"embedder": args.embedder, "llm": args.llm, "retrieval": "hybrid top_k 3", "target": args.target,
                  "fit_questions": f"qa_train.jsonl first {args.train} + withheld-gold twins",
                  "test_questions": "qa_heldout.jsonl (45 answerable, 5 unanswerable) + withheld-gold twins of the 45",
                  "counts": {k: {c: len(v) for c, v in _split(r).items()} for k, r in rows.items()}},
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
