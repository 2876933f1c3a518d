"""Ingestion: load → chunk → embed → bulk upsert, resumable and idempotent, never overwriting another source.

Chunk ids are deterministic, so a run killed half way is resumed by running it again: chunks
already in the index are skipped (no duplicates), missing ones are written (no losses), and
chunks of a changed document that no longer exist are removed once its new chunks are in.

A document id names one source (``Document.metadata["source"]``). Two documents with one id in a run,
or a document whose id the index already holds from another source, are a collision: the ingest stops
before its first write and names both sources. Stale-chunk removal only ever touches chunks of the same
document id from the same source.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from domainrag.data.chunking import Chunk, chunk_document
from domainrag.data.loaders import SUPPORTED_SUFFIXES, Document
from domainrag.data.sources import ParseProgress, fetch_sources, load_sources
from domainrag.errors import DomainRagError
from domainrag.index.base import VectorStore
from domainrag.index.encoder import Encoder

ProgressFn = Callable[[int, int], None]
__all__ = ["IngestReport", "ParseProgress", "ProgressFn", "ingest_documents", "ingest_paths"]
_LEGACY_DOWNLOAD = "/domainrag-ingest-"  # the temporary folder remote sources were downloaded to


@dataclass
class IngestReport:
    documents: int = 0
    chunks: int = 0
    written: int = 0
    skipped_existing: int = 0
    deleted_stale: int = 0
    errors: list[str] = field(default_factory=list)
    chunk_records: list[Chunk] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # origin -> ingested | warned | skipped

    def file_counts(self) -> dict[str, int]:
        """Files by outcome; they add up to the files found."""
        counts = {"ingested": 0, "warned": 0, "skipped": 0}
        for status in self.files.values():
            counts[status] += 1
        return counts

    def to_dict(self) -> dict[str, object]:
        return {"documents": self.documents, "chunks": self.chunks, "written": self.written,
                "skipped_existing": self.skipped_existing, "deleted_stale": self.deleted_stale,
                "errors": self.errors, "files": self.files}


class DocumentIdCollision(DomainRagError):
    """Two sources map to one document id; nothing was written or deleted."""


def embed_text(chunk: Chunk, contextual_header: bool = True) -> str:
    """What gets embedded: title + chunk text (the title disambiguates short chunks); the bare text when
    ``contextual_header`` is off."""
    if contextual_header and chunk.title and not chunk.text.startswith("#"):
        return f"{chunk.title}\n{chunk.text}"
    return chunk.text


def _source(doc: Document) -> str:
    return str(doc.metadata.get("source") or "")


def same_source(stored: str, incoming: str) -> bool:
    """Whether a stored chunk's source and an incoming document's source are one origin.

    Unknown on either side (documents built in code carry none) counts as the same, as before sources
    were recorded. Indexes written before sources were URIs hold the local path as given (same if it
    resolves to the incoming ``file://`` URI) or, for remote files, a temporary download path (unknown).
    """
    if not stored or not incoming or stored == incoming:
        return True
    if "://" in stored:
        return False
    if _LEGACY_DOWNLOAD in stored:
        return True
    return incoming.startswith("file://") and Path(stored).expanduser().resolve().as_uri() == incoming


def _check_collisions(docs: Sequence[Document], store: VectorStore) -> dict[str, set[str]]:
    """Refuse duplicate ids in ``docs`` and ids the index holds from another source; returns the
    chunk ids each document already has in the index (for stale removal)."""
    seen: dict[str, str] = {}
    for doc in docs:
        if doc.doc_id in seen:
            raise DocumentIdCollision(
                f"two documents have the id '{doc.doc_id}': {seen[doc.doc_id] or '?'} and {_source(doc) or '?'}",
                hint="document ids must be unique within an index (file paths are relative to the ingest "
                "root; JSONL records need distinct ids); nothing was written",
            )
        seen[doc.doc_id] = _source(doc)
    existing: dict[str, set[str]] = {}
    for doc in docs:
        chunks = store.chunk_sources(doc.doc_id)
        other = sorted({s for s in chunks.values() if not same_source(s, _source(doc))})
        if other:
            raise DocumentIdCollision(
                f"index '{store.name}' already holds document '{doc.doc_id}' from {other[0]}; "
                f"refusing to replace it with {_source(doc)}",
                hint="ingest both from a common parent folder so their ids differ (e.g. a/notes.txt and "
                "b/notes.txt), or use another index; nothing was written or deleted",
            )
        existing[doc.doc_id] = set(chunks)
    return existing


def _bulk_encode(encoder: Encoder, total: int) -> Callable[..., np.ndarray]:
    """Chunk vectors go through the encoder's bulk path where it has one (Embedder.encode_documents: ONNX
    Runtime, int8 where its guard passes); encode() stays the path of queries and of plain encoders."""
    bulk = getattr(encoder, "encode_documents", None)
    return functools.partial(bulk, total=total) if bulk is not None else encoder.encode


class EmbedWhileParsing:
    """Embeds the chunks of files already parsed while worker processes parse the rest (a ``Meanwhile`` of
    :func:`~domainrag.data.sources.load_sources`), so the embedder is not idle until the last file is read.

    Nothing is written meanwhile: the ingest's checks (colliding ids, ``strict``) need every file first. The
    vectors wait in :attr:`vectors`, keyed by the exact text embedded, and :func:`ingest_documents` takes them
    instead of embedding those texts again. Chunks the index already holds are not embedded. An encoder that
    picks its bulk path by the ingest's size (``bulk_min_texts``) gets nothing until that many texts are
    queued, so the early chunks go the path :func:`ingest_documents` will take for the rest.
    """

    def __init__(self, store: VectorStore, encoder: Encoder, *, batch_size: int, max_words: int,
                 overlap_words: int, contextual_header: bool) -> None:
        self.store, self.encoder, self.batch_size = store, encoder, batch_size
        self.chunking = {"max_words": max_words, "overlap_words": overlap_words,
                         "contextual_header": contextual_header}
        self.vectors: dict[str, np.ndarray] = {}
        self._todo: list[str] = []
        self._seen: set[str] = set()  # every text queued: a lower bound of what the ingest will embed

    def loaded(self, docs: list[Document]) -> None:
        chunks = [c for doc in docs for c in chunk_document(doc, **self.chunking)]
        present = self.store.existing_ids([c.chunk_id for c in chunks]) if self.store.exists() else set()
        header = self.chunking["contextual_header"]
        texts = {embed_text(c, header) for c in chunks if c.chunk_id not in present} - self._seen
        self._seen |= texts
        self._todo.extend(sorted(texts, key=len, reverse=True))  # one file's similar lengths share a batch

    def work(self) -> bool:
        if not self._todo or len(self._seen) < getattr(self.encoder, "bulk_min_texts", 0):
            return False
        part, self._todo = self._todo[: self.batch_size], self._todo[self.batch_size :]
        vecs = _bulk_encode(self.encoder, len(self._seen))(part, batch_size=self.batch_size)
        self.vectors.update(zip(part, vecs, strict=True))
        return bool(self._todo)


def _vectors(encode: Callable[..., np.ndarray], texts: list[str], ready: Mapping[str, np.ndarray],
             batch_size: int) -> np.ndarray:
    """``texts``' vectors: those in ``ready`` as they are, the others encoded now."""
    missing = [t for t in texts if t not in ready]
    if len(missing) == len(texts):
        return encode(texts, batch_size=batch_size)
    fresh = dict(zip(missing, encode(missing, batch_size=batch_size), strict=True)) if missing else {}
    return np.stack([fresh[t] if t in fresh else ready[t] for t in texts])


def ingest_documents(
    docs: Sequence[Document],
    store: VectorStore,
    encoder: Encoder,
    *,
    batch_size: int = 64,
    max_words: int = 120,
    overlap_words: int = 20,
    progress: ProgressFn | None = None,
    report: IngestReport | None = None,
    encode_group: int = 8,
    contextual_header: bool = True,
    vectors: Mapping[str, np.ndarray] | None = None,
) -> IngestReport:
    """Chunk, embed and upsert documents; ``encode_group`` batches are embedded per model call and
    written together (the unit a crash can lose and a re-run redoes). ``contextual_header``: the
    document title and section path go in front of what is embedded and searched (docs/formats.md).
    ``vectors``: texts embedded already (:class:`EmbedWhileParsing`), used instead of embedding them again."""
    report = report or IngestReport()
    # Refuse before the first write if the index was built for another dimension.
    store.check_dimension(encoder.dimension, encoder.name)
    if not store.exists():
        store.create(encoder.dimension)
    before = _check_collisions(docs, store)
    chunks: list[Chunk] = []
    for doc in docs:
        chunks.extend(chunk_document(doc, max_words=max_words, overlap_words=overlap_words,
                                     contextual_header=contextual_header))
    report.documents += len(docs)
    report.chunks += len(chunks)
    report.chunk_records.extend(chunks)
    present = store.existing_ids([c.chunk_id for c in chunks])
    todo = [c for c in chunks if c.chunk_id not in present]
    report.skipped_existing += len(chunks) - len(todo)
    done = 0
    if progress:
        progress(0, len(todo))
    # Groups of several batches are sorted by text length and then embedded batch by batch: similar
    # lengths share a batch (little padding, as when sentence-transformers sorts one big call) while
    # progress is reported after every batch; a group is written at once.
    group = batch_size * max(encode_group, 1)
    encode = _bulk_encode(encoder, len(todo))
    texts = {c.chunk_id: embed_text(c, contextual_header) for c in todo}
    for start in range(0, len(todo), group):
        batch = sorted(todo[start : start + group], key=lambda c: len(texts[c.chunk_id]), reverse=True)
        parts = []
        for offset in range(0, len(batch), batch_size):
            part = batch[offset : offset + batch_size]
            parts.append(_vectors(encode, [texts[c.chunk_id] for c in part], vectors or {}, batch_size))
            done += len(part)
            if progress:
                progress(done, len(todo))
        report.written += store.upsert(batch, np.concatenate(parts))
    # Only after the new chunks are in: drop this document's (same source's) chunks that no longer exist.
    keep = {c.chunk_id for c in chunks}
    stale = sorted(set().union(*before.values()) - keep) if before else []
    if stale:
        report.deleted_stale += store.delete_chunks(stale)
    store.refresh()
    return report


def ingest_paths(
    paths: Sequence[str | Path],
    store: VectorStore,
    encoder: Encoder,
    *,
    batch_size: int = 64,
    max_words: int = 120,
    overlap_words: int = 20,
    progress: ProgressFn | None = None,
    strict: bool = False,
    parse_progress: ParseProgress | None = None,
    parse_workers: int | None = None,
    contextual_header: bool = True,
) -> IngestReport:
    """Ingest local files/folders and remote URLs (preflighted, downloaded to a temporary folder).

    A bad file or JSONL line is reported in ``errors`` and skipped; if nothing could be loaded at all,
    raises with every error. ``strict``: any skip or warning raises before anything is written.
    Files are parsed in worker processes where several need a structured reader (``parse_workers``,
    default :func:`~domainrag.data.sources.parse_workers`); where cores are left over, this process embeds the
    chunks of the files already parsed meanwhile (:class:`EmbedWhileParsing`); ``parse_progress`` gets
    ``(label, done, total)`` for the files and for the pages of a long file.
    """
    store.check_dimension(encoder.dimension, encoder.name)  # before loading anything
    report = IngestReport()
    early = EmbedWhileParsing(store, encoder, batch_size=batch_size, max_words=max_words,
                              overlap_words=overlap_words, contextual_header=contextual_header)
    with tempfile.TemporaryDirectory(prefix="domainrag-ingest-") as tmp:
        docs = load_sources(fetch_sources(paths, Path(tmp)), report.errors, report.files,
                            workers=parse_workers, progress=parse_progress, meanwhile=early)
    if strict and report.errors:
        raise DomainRagError("--strict: nothing was written, because these files were not read whole:\n  "
                             + "\n  ".join(report.errors), hint="fix or remove them, or ingest without --strict")
    if not docs:
        found = "\n  ".join(report.errors) or "no files found"
        raise DomainRagError(f"no document could be loaded from {', '.join(map(str, paths))}:\n  {found}",
                             hint=f"supported file types: {', '.join(SUPPORTED_SUFFIXES)}")
    return ingest_documents(docs, store, encoder, batch_size=batch_size, max_words=max_words,
                            overlap_words=overlap_words, progress=progress, report=report,
                            contextual_header=contextual_header, vectors=early.vectors)
