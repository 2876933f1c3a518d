"""ANN benchmark for the embedded store: IVF-PQ build time, peak memory, recall@k and latency.

Data: ``--n`` synthetic unit vectors from a seeded mixture of ``--clusters`` gaussian clusters, each
spread over its own random ``--intrinsic-dim``-dimensional subspace plus small isotropic noise (real
text embeddings are clustered and of low intrinsic dimension; pure isotropic noise would make k-NN
meaningless). Rows are bulk-appended (``table.add``) to a table created by
:class:`~domainrag.index.embedded.EmbeddedStore` (same schema, dummy text), the index is built by
``EmbeddedStore.build_ann_index`` (what ``refresh()`` runs past ``ann_min_rows``) and queried through
``EmbeddedStore.dense_search`` (the retriever's dense path). Ground truth: exact cosine top-k by
numpy brute force, computed while the data is generated so the full matrix is never held in memory.

    python benchmarks/bench_ann.py --n 1000000 --dim 384 --out benchmarks/results/ann.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shlex
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pyarrow as pa

from domainrag.index.config import EmbeddedStoreConfig
from domainrag.index.embedded import EmbeddedStore

GEN_BATCH = 50_000  # rows per generated batch; fixed so the first m rows never depend on --n


def _normalize(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


class ClusteredVectors:
    """Seeded mixture of gaussian clusters on low-dimensional subspaces, normalised to unit length."""

    def __init__(self, dim: int, clusters: int, intrinsic_dim: int, spread: float, noise: float, seed: int) -> None:
        rng = np.random.default_rng([seed, 0])
        self.dim, self.clusters, self.spread, self.noise, self.seed = dim, clusters, spread, noise, seed
        self.centroids = _normalize(rng.standard_normal((clusters, dim)))
        # Column-normalised random bases: each cluster varies along its own r directions.
        self.bases = (rng.standard_normal((clusters, dim, intrinsic_dim)) / np.sqrt(dim)).astype(np.float32)
        self.intrinsic_dim = intrinsic_dim

    def sample(self, n: int, stream: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 1, stream])
        assign = rng.integers(self.clusters, size=n)
        z = rng.standard_normal((n, self.intrinsic_dim)).astype(np.float32) / np.sqrt(self.intrinsic_dim)
        g = rng.standard_normal((n, self.dim)).astype(np.float32) / np.sqrt(self.dim)
        out = self.centroids[assign] + self.noise * g
        for s in range(0, n, 4096):  # gathering bases for all rows at once would take GBs
            sl = slice(s, s + 4096)
            out[sl] += self.spread * np.einsum("bdr,br->bd", self.bases[assign[sl]], z[sl])
        return _normalize(out)

    def batches(self, n: int) -> Iterator[tuple[int, np.ndarray]]:
        for i, start in enumerate(range(0, n, GEN_BATCH)):
            yield start, self.sample(min(GEN_BATCH, n - start), stream=2 + i)

    def queries(self, n: int) -> np.ndarray:
        return self.sample(n, stream=1)


class TopK:
    """Running exact top-k (cosine = dot on unit vectors) of each query over streamed batches."""

    def __init__(self, queries: np.ndarray, k: int) -> None:
        self.q, self.k = queries, k
        self.scores = np.full((len(queries), 0), -np.inf, dtype=np.float32)
        self.ids = np.zeros((len(queries), 0), dtype=np.int64)

    def update(self, start: int, vectors: np.ndarray) -> None:
        sims = self.q @ vectors.T
        scores = np.concatenate([self.scores, sims], axis=1)
        ids = np.concatenate([self.ids, np.broadcast_to(np.arange(start, start + len(vectors)), sims.shape)], axis=1)
        keep = np.argpartition(-scores, self.k - 1, axis=1)[:, : self.k] if scores.shape[1] > self.k else None
        if keep is not None:
            scores, ids = np.take_along_axis(scores, keep, 1), np.take_along_axis(ids, keep, 1)
        order = np.argsort(-scores, axis=1)
        self.scores, self.ids = np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)


class PeakRSS:
    """Samples this process's RSS in a thread; ``peak`` is the maximum seen while running."""

    def __init__(self, interval: float = 0.05) -> None:
        self.proc, self.interval, self.peak = psutil.Process(), interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRSS:
        self.peak = self.proc.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def _mib(n_bytes: float) -> float:
    return round(n_bytes / 2**20, 1)


def _rows(start: int, vectors: np.ndarray, schema: pa.Schema) -> pa.Table:
    n, dim = vectors.shape
    ids = [str(i) for i in range(start, start + n)]
    return pa.table(
        {
            "chunk_id": ids,
            "doc_id": ids,
            "title": [""] * n,
            "text": [f"synthetic row {i}" for i in ids],
            "position": pa.array(np.zeros(n, dtype=np.int32)),
            "metadata": ["{}"] * n,
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim),
        },
        schema=schema,
    )


def measure(store: EmbeddedStore, queries: np.ndarray, truth: np.ndarray, k: int, warmup: int) -> dict[str, Any]:
    """Recall@k against ``truth`` and per-query latency of ``store.dense_search`` at its current config."""
    for q in queries[:warmup]:
        store.dense_search(q, k)
    lat, recalls = [], []
    for q, exact in zip(queries, truth, strict=True):
        t0 = time.perf_counter()
        hits = store.dense_search(q, k)
        lat.append(time.perf_counter() - t0)
        found = {int(h.chunk_id) for h in hits}
        recalls.append(len(found & set(exact[:k].tolist())) / k)
    ms = np.array(lat) * 1000
    return {
        "nprobes": store.config.nprobes,
        "refine_factor": store.config.refine_factor,
        f"recall@{k}": round(float(np.mean(recalls)), 4),
        f"min_recall@{k}": round(float(np.min(recalls)), 2),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "mean_ms": round(float(ms.mean()), 2),
    }


def machine_info() -> dict[str, Any]:
    import lancedb
    import torch

    return {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "lancedb": lancedb.__version__,
        "pyarrow": pa.__version__,
        "load_avg_at_start": list(os.getloadavg()),
        "total_ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
    }


def markdown(result: dict[str, Any]) -> str:
    k = result["k"]
    b = result["build"]
    lines = [
        f"ANN (IVF-PQ, cosine) n={result['n']:,} dim={result['dim']}: build {b['seconds']} s, "
        f"peak RSS {b['peak_rss_mib']} MiB (+{b['rss_increase_mib']} MiB over pre-build), "
        f"{b['index'].get('num_partitions', '?')} partitions, {b['index'].get('num_sub_vectors', '?')} sub-vectors",
        "",
        f"| setting | nprobes | refine | recall@{k} | min | p50 ms | p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    rows = [("default", result["default"]), *(("sweep", r) for r in result["sweep"])]
    if result.get("flat"):
        rows.append(("exact (no index)", result["flat"]))
    for label, r in rows:
        lines.append(
            f"| {label} | {r.get('nprobes', '-')} | {r.get('refine_factor', '-')} | {r[f'recall@{k}']:.3f} | "
            f"{r.get(f'min_recall@{k}', '-')} | {r['p50_ms']} | {r['p99_ms']} |"
        )
    return "\n".join(lines)


def _index_info(store: EmbeddedStore, probe: np.ndarray) -> dict[str, Any]:
    """Index parameters as LanceDB reports them (partition count read from a query plan)."""
    table = store._table()
    info: dict[str, Any] = {}
    try:
        for idx in table.list_indices():
            if "vector" in list(idx.columns):
                details = getattr(idx, "index_details", None) or {}
                info.update(name=idx.name, index_type=str(idx.index_type), num_indexed_rows=idx.num_indexed_rows,
                            size_mib=_mib(idx.size_bytes or 0), metric=details.get("metric_type"),
                            **{k: v for k, v in (details.get("compression") or {}).items() if k != "type"})
        plan = table.search(probe, vector_column_name="vector").distance_type("cosine").nprobes(1).limit(1)
        found = re.search(r"partitions_ranked=(\d+)", plan.analyze_plan())
        info["num_partitions"] = int(found.group(1)) if found else None
    except Exception as exc:  # introspection only; never fail the benchmark on it
        info["error"] = repr(exc)
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="rows in the table")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--clusters", type=int, default=1000)
    ap.add_argument("--intrinsic-dim", type=int, default=32, help="dimensions each cluster spreads along")
    ap.add_argument("--spread", type=float, default=1.0, help="scale of the in-cluster (subspace) variation")
    ap.add_argument("--noise", type=float, default=0.3, help="scale of the isotropic noise")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--nprobes", type=int, nargs="+", default=[10, 20, 50], help="sweep values")
    ap.add_argument("--refine", type=int, nargs="+", default=[1, 5, 10], help="sweep values")
    ap.add_argument("--num-partitions", type=int, default=None, help="override ann_num_partitions")
    ap.add_argument("--num-sub-vectors", type=int, default=None, help="override ann_num_sub_vectors")
    ap.add_argument("--no-flat", action="store_true", help="skip the exact (index-bypassing) latency baseline")
    ap.add_argument("--workdir", default=None, help="LanceDB folder (default: a temporary one, removed after)")
    ap.add_argument("--out", default=None, help="write the JSON result here")
    ap.add_argument("--markdown", action="store_true", help="print the results as a markdown table")
    args = ap.parse_args(argv)

    overrides = {k: v for k, v in (("ann_num_partitions", args.num_partitions),
                                   ("ann_num_sub_vectors", args.num_sub_vectors)) if v is not None}
    default_cfg = EmbeddedStoreConfig()
    tmp = tempfile.TemporaryDirectory(prefix="bench_ann_") if args.workdir is None else None
    uri = args.workdir or tmp.name  # type: ignore[union-attr]
    store = EmbeddedStore("ann_bench", default_cfg.model_copy(update=overrides), uri)
    store.drop()
    store.create(args.dim)
    table = store._table()
    schema = table.schema

    gen = ClusteredVectors(args.dim, args.clusters, args.intrinsic_dim, args.spread, args.noise, args.seed)
    queries = gen.queries(args.queries)
    topk = TopK(queries, args.k)
    t0 = time.perf_counter()
    for start, vecs in gen.batches(args.n):
        topk.update(start, vecs)
        table.add(_rows(start, vecs, schema))
        print(f"\rloaded {start + len(vecs):,}/{args.n:,}", end="", file=sys.stderr, flush=True)
    load_s = time.perf_counter() - t0
    print(file=sys.stderr)

    rss_before = psutil.Process().memory_info().rss
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        store.build_ann_index()
        build_s = time.perf_counter() - t0
    build = {
        "seconds": round(build_s, 2),
        "rss_before_mib": _mib(rss_before),
        "peak_rss_mib": _mib(mem.peak),
        "rss_increase_mib": _mib(mem.peak - rss_before),
        "ru_maxrss_mib": _mib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024),
        "index": _index_info(store, queries[0]),
        "params": {"num_partitions": store.config.ann_num_partitions,
                   "num_sub_vectors": store.config.ann_num_sub_vectors},
    }
    print(f"index built in {build_s:.1f} s, peak RSS {build['peak_rss_mib']} MiB", file=sys.stderr)

    base = store.config
    result: dict[str, Any] = {
        "benchmark": "ann",
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
        "machine": machine_info(),
        "n": args.n, "dim": args.dim, "k": args.k, "queries": args.queries,
        "data": {"clusters": args.clusters, "intrinsic_dim": args.intrinsic_dim, "spread": args.spread,
                 "noise": args.noise, "seed": args.seed,
                 "mean_cos_nn1": round(float(topk.scores[:, 0].mean()), 3),
                 f"mean_cos_nn{args.k}": round(float(topk.scores[:, -1].mean()), 3)},
        "load_seconds": round(load_s, 2),
        "build": build,
    }
    for q in queries:  # untimed pass: loads the index and its partitions into LanceDB's cache
        store.dense_search(q, args.k)
    result["default"] = measure(store, queries, topk.ids, args.k, args.warmup)
    sweep = []
    for nprobes in args.nprobes:
        for refine in args.refine:
            store.config = base.model_copy(update={"nprobes": nprobes, "refine_factor": refine})
            sweep.append(measure(store, queries, topk.ids, args.k, args.warmup))
            print(f"nprobes={nprobes} refine={refine}: {sweep[-1]}", file=sys.stderr)
    store.config = base
    result["sweep"] = sweep
    if not args.no_flat:
        lat, recalls = [], []
        for i, (q, exact) in enumerate(zip(queries, topk.ids, strict=True)):
            t0 = time.perf_counter()
            rows = table.search(q, vector_column_name="vector").distance_type("cosine").bypass_vector_index()
            rows = rows.select(["chunk_id"]).limit(args.k).to_list()
            if i >= min(args.warmup, len(queries) // 2):
                lat.append(time.perf_counter() - t0)
            recalls.append(len({int(r["chunk_id"]) for r in rows} & set(exact.tolist())) / args.k)
        ms = np.array(lat) * 1000
        result["flat"] = {f"recall@{args.k}": round(float(np.mean(recalls)), 4),
                          "p50_ms": round(float(np.percentile(ms, 50)), 2),
                          "p99_ms": round(float(np.percentile(ms, 99)), 2)}
    target = [r for r in sweep if r[f"recall@{args.k}"] >= 0.95]
    result["cheapest_reaching_0.95"] = min(target, key=lambda r: r["p50_ms"]) if target else None
    print(json.dumps({k: result[k] for k in ("default", "cheapest_reaching_0.95")}, indent=1))
    if args.markdown:
        print(markdown(result))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
