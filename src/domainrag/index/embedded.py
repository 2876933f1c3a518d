"""Embedded vector store on LanceDB: durable columnar files on disk (or object storage),
cosine k-NN (exact below ``ann_min_rows``, IVF-PQ above), native BM25 full-text index,
deletes and upserts via ``merge_insert``."""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import numpy as np
import pyarrow as pa

from domainrag.data.chunking import Chunk
from domainrag.index.base import Filters, SearchHit, VectorStore
from domainrag.index.config import EmbeddedStoreConfig

_COLUMNS = ["chunk_id", "doc_id", "title", "text", "metadata"]
"""What a search returns: everything a hit needs, never the vector (384 floats a row to decode)."""


def _quote(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _where(filters: Filters | None) -> str | None:
    """SQL predicate for LanceDB from simple equality / membership filters."""
    if not filters:
        return None
    clauses = []
    for key, value in filters.items():
        if key not in ("doc_id", "title", "chunk_id"):
            raise ValueError(f"unsupported filter field '{key}' for the embedded store (use doc_id or title)")
        if isinstance(value, (list, tuple, set)):
            clauses.append(f"{key} IN ({', '.join(_quote(v) for v in value)})")
        else:
            clauses.append(f"{key} = {_quote(value)}")
    return " AND ".join(clauses)


class EmbeddedStore(VectorStore):
    def __init__(self, name: str, config: EmbeddedStoreConfig, default_uri: str) -> None:
        super().__init__(name)
        import lancedb

        self.config = config
        self.uri = config.uri or default_uri
        # One table handle is kept open (opening costs a manifest read per query); the consistency
        # interval makes that handle pick up writes by other processes (an ingest while an app serves).
        self.db = lancedb.connect(self.uri, read_consistency_interval=timedelta(seconds=config.read_consistency_s))
        self._handle: Any | None = None
        self._fts_dirty = False

    def _open(self) -> Any | None:
        """Open the table afresh (None if absent) and keep the handle."""
        try:
            self._handle = self.db.open_table(self.name)
        except (FileNotFoundError, ValueError):
            self._handle = None
        return self._handle

    def _table(self) -> Any | None:
        """The kept handle, opened on first use."""
        return self._handle if self._handle is not None else self._open()

    def exists(self) -> bool:
        return self._open() is not None

    def _schema(self, dimension: int) -> pa.Schema:
        return pa.schema(
            [
                pa.field("chunk_id", pa.string()),
                pa.field("doc_id", pa.string()),
                pa.field("title", pa.string()),
                pa.field("text", pa.string()),
                pa.field("position", pa.int32()),
                pa.field("metadata", pa.string()),
                pa.field("vector", pa.list_(pa.float32(), dimension)),
            ]
        )

    def create(self, dimension: int) -> None:
        if self.exists():
            return
        self.db.create_table(self.name, schema=self._schema(dimension))

    def dimension(self) -> int | None:
        table = self._table()
        if table is None:
            return None
        return int(table.schema.field("vector").type.list_size)

    def _write(self, chunks: Sequence[Chunk], vectors: np.ndarray) -> int:
        table = self._table()
        if table is None:
            self.create(int(vectors.shape[1]))
            table = self._table()
        rows = pa.table(
            {
                "chunk_id": [c.chunk_id for c in chunks],
                "doc_id": [c.doc_id for c in chunks],
                "title": [c.title for c in chunks],
                "text": [c.text for c in chunks],
                "position": pa.array([c.position for c in chunks], pa.int32()),
                "metadata": [json.dumps(c.metadata, sort_keys=True, default=str) for c in chunks],
                "vector": pa.FixedSizeListArray.from_arrays(
                    pa.array(vectors.reshape(-1), pa.float32()), int(vectors.shape[1])
                ),
            },
            schema=self._schema(int(vectors.shape[1])),
        )
        table.merge_insert("chunk_id").when_matched_update_all().when_not_matched_insert_all().execute(rows)
        self._fts_dirty = True
        return len(chunks)

    def refresh(self) -> None:
        """Rebuild the BM25 index and, past ``ann_min_rows``, the ANN index."""
        table = self._table()
        if table is None:
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table.create_fts_index("text", replace=True, stem=self.config.fts_stem,
                                   remove_stop_words=self.config.fts_remove_stop_words)
            n = table.count_rows()
        if n >= self.config.ann_min_rows:
            self.build_ann_index()
        self._fts_dirty = False

    def build_ann_index(self) -> None:
        """(Re)build the cosine IVF-PQ index on ``vector`` with the configured parameters.

        PQ defaults to 8 dimensions per sub-vector: LanceDB's own default (16) left recall@10 at 0.80
        (refine 5) on clustered data at 1M-row density, 8 reaches 0.99 (``benchmarks/bench_ann.py``).
        """
        from lancedb.index import IvfPq

        table = self._table()
        if table is None:
            return
        cfg = self.config
        dim = int(table.schema.field("vector").type.list_size)
        sub_vectors = cfg.ann_num_sub_vectors or (dim // 8 if dim % 8 == 0 else None)
        ivf_pq = IvfPq(distance_type="cosine", num_partitions=cfg.ann_num_partitions, num_sub_vectors=sub_vectors)
        table.create_index("vector", config=ivf_pq, replace=True)

    def _ids(self, where: str) -> set[str]:
        table = self._table()
        if table is None:
            return set()
        res = table.search().where(where).select(["chunk_id"]).limit(None).to_arrow()
        return set(res.column("chunk_id").to_pylist())

    def existing_ids(self, chunk_ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        ids = list(chunk_ids)
        for start in range(0, len(ids), 500):
            batch = ids[start : start + 500]
            found |= self._ids(f"chunk_id IN ({', '.join(_quote(i) for i in batch)})")
        return found

    def chunk_sources(self, doc_id: str) -> dict[str, str]:
        table = self._table()
        if table is None:
            return {}
        res = table.search().where(f"doc_id = {_quote(doc_id)}").select(["chunk_id", "metadata"]).limit(None).to_arrow()
        ids, metas = res.column("chunk_id").to_pylist(), res.column("metadata").to_pylist()
        return {i: self._source_of(m) for i, m in zip(ids, metas, strict=True)}

    def delete_chunks(self, chunk_ids: Sequence[str]) -> int:
        table = self._table()
        if table is None or not chunk_ids:
            return 0
        ids = list(chunk_ids)
        for start in range(0, len(ids), 500):
            table.delete(f"chunk_id IN ({', '.join(_quote(i) for i in ids[start : start + 500])})")
        self._fts_dirty = True
        return len(ids)

    def count(self) -> int:
        table = self._table()
        return 0 if table is None else int(table.count_rows())

    def document_count(self) -> int:
        table = self._table()
        if table is None:
            return 0
        return len(set(table.to_arrow().column("doc_id").to_pylist()))

    @staticmethod
    def _hits(rows: list[dict[str, Any]], score_of: Any, name: str) -> list[SearchHit]:
        hits = []
        for rank, row in enumerate(rows, start=1):
            score = float(score_of(row))
            hits.append(
                SearchHit(
                    chunk_id=row["chunk_id"], doc_id=row["doc_id"], text=row["text"], score=score,
                    title=row.get("title") or "", metadata=json.loads(row.get("metadata") or "{}"),
                    ranks={name: rank}, scores={name: score},
                )
            )
        return hits

    def dense_search(self, vector: np.ndarray, k: int, filters: Filters | None = None) -> list[SearchHit]:
        table = self._table()
        if table is None:
            return []
        q = table.search(np.asarray(vector, dtype=np.float32), vector_column_name="vector").metric("cosine")
        q = q.nprobes(self.config.nprobes).refine_factor(self.config.refine_factor)
        where = _where(filters)
        if where:
            q = q.where(where, prefilter=True)
        rows = q.select([*_COLUMNS, "_distance"]).limit(k).to_list()
        return self._hits(rows, lambda r: 1.0 - r["_distance"], "dense")

    def text_search(self, query: str, k: int, filters: Filters | None = None) -> list[SearchHit]:
        table = self._table()
        if table is None or not query.strip():
            return []
        if self._fts_dirty:
            self.refresh()
        q = table.search(query, query_type="fts", fts_columns="text").select([*_COLUMNS, "_score"])
        where = _where(filters)
        if where:
            q = q.where(where, prefilter=True)
        try:
            rows = q.limit(k).to_list()
        except Exception as exc:  # no FTS index yet (empty table) or query syntax the parser rejects
            if "index" in str(exc).lower():
                self.refresh()
                rows = q.limit(k).to_list()
            else:
                raise
        return self._hits(rows, lambda r: r["_score"], "bm25")

    def drop(self) -> None:
        if self.exists():
            self.db.drop_table(self.name)
        self._handle = None
