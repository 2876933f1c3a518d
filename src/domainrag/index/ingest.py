"""Ingestion: load → chunk → embed → bulk upsert, resumable and idempotent.

Chunk ids are deterministic, so a run killed half way is resumed by running it again: chunks
already in the index are skipped (no duplicates), missing ones are written (no losses), and
chunks of a changed document that no longer exist are removed once its new chunks are in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from domainrag.data.chunking import Chunk, chunk_document
from domainrag.data.loaders import Document, iter_files, load_file
from domainrag.errors import DomainRagError
from domainrag.index.base import VectorStore
from domainrag.retrieval.embedder import Embedder

ProgressFn = Callable[[int, int], None]


@dataclass
class IngestReport:
    documents: int = 0
    chunks: int = 0
    written: int = 0
    skipped_existing: int = 0
    deleted_stale: int = 0
    errors: list[str] = field(default_factory=list)
    chunk_records: list[Chunk] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {"documents": self.documents, "chunks": self.chunks, "written": self.written,
                "skipped_existing": self.skipped_existing, "deleted_stale": self.deleted_stale,
                "errors": self.errors}


def load_documents(paths: Sequence[str | Path], report: IngestReport) -> list[Document]:
    """Load every supported file; a bad file is reported and skipped, the rest continue."""
    docs: list[Document] = []
    for path in iter_files(paths):
        try:
            docs.extend(load_file(path))
        except DomainRagError as exc:
            report.errors.append(str(exc))
    return docs


def embed_text(chunk: Chunk) -> str:
    """What gets embedded: title + chunk text (the title disambiguates short chunks)."""
    return f"{chunk.title}\n{chunk.text}" if chunk.title and not chunk.text.startswith("#") else chunk.text


def ingest_documents(
    docs: Sequence[Document],
    store: VectorStore,
    embedder: Embedder,
    *,
    batch_size: int = 64,
    max_words: int = 120,
    overlap_words: int = 20,
    progress: ProgressFn | None = None,
    report: IngestReport | None = None,
    encode_group: int = 8,
) -> IngestReport:
    """Chunk, embed and upsert documents; ``encode_group`` batches are embedded per model call and
    written together (the unit a crash can lose and a re-run redoes)."""
    report = report or IngestReport()
    # Refuse before the first write if the index was built for another dimension.
    store.check_dimension(embedder.dimension, embedder.name)
    if not store.exists():
        store.create(embedder.dimension)
    chunks: list[Chunk] = []
    for doc in docs:
        chunks.extend(chunk_document(doc, max_words=max_words, overlap_words=overlap_words))
    report.documents += len(docs)
    report.chunks += len(chunks)
    report.chunk_records.extend(chunks)
    present = store.existing_ids([c.chunk_id for c in chunks])
    todo = [c for c in chunks if c.chunk_id not in present]
    report.skipped_existing += len(chunks) - len(todo)
    done = 0
    if progress:
        progress(0, len(todo))
    # Encode groups of several batches per call: sentence-transformers sorts a call's texts by
    # length, so bigger calls waste less padding (measured ~1.3x faster than one call per batch).
    group = batch_size * max(encode_group, 1)
    for start in range(0, len(todo), group):
        batch = todo[start : start + group]
        vectors = embedder.encode([embed_text(c) for c in batch], batch_size=batch_size)
        report.written += store.upsert(batch, vectors)
        done += len(batch)
        if progress:
            progress(done, len(todo))
    # Only after the new chunks are in: drop chunks of these documents that no longer exist.
    by_doc: dict[str, set[str]] = {}
    for c in chunks:
        by_doc.setdefault(c.doc_id, set()).add(c.chunk_id)
    for doc_id, keep in by_doc.items():
        stale = store.ids_for_document(doc_id) - keep
        if stale:
            report.deleted_stale += store.delete_chunks(sorted(stale))
    store.refresh()
    return report
