"""Ingest wall time of a folder of structured files, with parsing overlapped with embedding or not.

Each ``--src`` is a checkout's ``src`` folder (``LABEL=PATH``; two commits in one run, alternated for
``--rounds``). Every run is a fresh workspace and a fresh process: ``domainrag index create`` with the base
embedder, then ``domainrag ingest`` of ``--folder`` with ``DOMAINRAG_PARSE_WORKERS`` set to ``--workers``.
One ingest of the folder runs first and is not timed (the bulk encoder's one-off ONNX export and guard).
Reported per run: ingest seconds (the ``ingest`` command alone) and the chunks written.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_ingest_overlap.py --folder /path/to/pdfs \
        --src before=/tmp/base/src --src after=src --rounds 2 --out benchmarks/results/ingest_overlap.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _machine import lscpu, version

DOMAINRAG = [sys.executable, "-c", "from domainrag.cli.main import main; main()"]


def _run(src: str, home: Path, args: list[str], workers: int) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": str(Path(src).resolve()), "DOMAINRAG_HOME": str(home),
           "DOMAINRAG_PARSE_WORKERS": str(workers)}
    start = time.perf_counter()
    done = subprocess.run([*DOMAINRAG, *args], env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{' '.join(args)} failed under {src}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return seconds, done.stdout


def ingest_once(src: str, folder: Path, workers: int) -> dict[str, float | int | None]:
    with tempfile.TemporaryDirectory(prefix="bench-ingest-overlap-") as tmp:
        home = Path(tmp) / "ws"
        _run(src, home, ["index", "create", "kb", "--embedding-model", "all-minilm-l6-v2"], workers)
        seconds, out = _run(src, home, ["ingest", "--index", "kb", str(folder)], workers)
    chunks = re.search(r"(\d[\d,]*) chunks", out)
    return {"ingest_s": round(seconds, 2), "chunks": int(chunks.group(1).replace(",", "")) if chunks else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folder", type=Path, required=True)
    ap.add_argument("--src", action="append", required=True, help="LABEL=PATH to a checkout's src folder")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    sources = dict(s.split("=", 1) for s in a.src)
    ingest_once(next(iter(sources.values())), a.folder, a.workers)  # warm-up: ONNX export, page cache
    runs: dict[str, list[dict[str, float | int | None]]] = {label: [] for label in sources}
    for r in range(a.rounds):
        for label, src in sources.items():
            runs[label].append(ingest_once(src, a.folder, a.workers))
            print(f"round {r + 1} {label}: {runs[label][-1]}", flush=True)
    files = sorted(p for p in a.folder.rglob("*") if p.is_file())
    out = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "folder": str(a.folder),
           "files": len(files), "bytes": sum(p.stat().st_size for p in files), "workers": a.workers,
           "sources": sources, "runs": runs,
           "median_ingest_s": {k: statistics.median(float(r["ingest_s"] or 0) for r in v) for k, v in runs.items()},
           "date": time.strftime("%Y-%m-%d"), "machine": lscpu(), "load_average_at_end": os.getloadavg(),
           "versions": {p: version(p) for p in ("torch", "onnxruntime", "sentence-transformers", "pypdfium2",
                                                "pdfplumber")}}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=1))
    print(json.dumps(out["median_ingest_s"]))


if __name__ == "__main__":
    main()
