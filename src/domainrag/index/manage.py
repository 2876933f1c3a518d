"""Control-plane operations on indexes: create (mapping from the model), ingest, stats, delete."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from domainrag.errors import ConflictError, DomainRagError
from domainrag.index import open_store, parse_store_config
from domainrag.index.config import StoreConfig
from domainrag.index.ingest import IngestReport, ProgressFn, ingest_documents, load_documents
from domainrag.workspace import Workspace


def create_index(
    ws: Workspace, name: str, embedding_model: str, store: StoreConfig | dict[str, Any] | str | None = None
) -> dict[str, Any]:
    """Create an index whose vector dimension is read from the embedding model.

    An index that already exists in the store with another dimension is refused before any write.
    """
    if ws.catalog.get("index", name) is not None:
        raise ConflictError(f"index '{name}' already exists", hint="use another name or `domainrag index delete`")
    cfg = store if hasattr(store, "type") else parse_store_config(store)  # type: ignore[arg-type]
    embedder = ws.embedder(embedding_model)
    backend = open_store(name, cfg, ws.default_store_uri)  # type: ignore[arg-type]
    backend.check_dimension(embedder.dimension, embedding_model)
    backend.create(embedder.dimension)
    return ws.catalog.create(
        "index", name,
        {"embedding_model": embedding_model, "dimension": embedder.dimension, "store": cfg.model_dump()},  # type: ignore[union-attr]
    )


def ingest(
    ws: Workspace,
    index: str,
    paths: Sequence[str | Path],
    *,
    batch_size: int = 64,
    max_words: int = 120,
    overlap_words: int = 20,
    progress: ProgressFn | None = None,
) -> IngestReport:
    """Load, chunk, embed and upsert files into an index; records the chunks in the lake."""
    record = ws.catalog.require("index", index)
    store = ws.store(index)
    embedder = ws.embedder(record["embedding_model"])
    store.check_dimension(embedder.dimension, embedder.name)  # before loading anything
    report = IngestReport()
    with tempfile.TemporaryDirectory(prefix="domainrag-ingest-") as tmp:
        local = fetch_sources(paths, Path(tmp))
        docs = load_documents(local, report)
    if not docs and report.errors:
        raise DomainRagError("no document could be loaded:\n  " + "\n  ".join(report.errors))
    ingest_documents(docs, store, embedder, batch_size=batch_size, max_words=max_words,
                     overlap_words=overlap_words, progress=progress, report=report)
    lines = "".join(json.dumps(c.to_dict()) + "\n" for c in report.chunk_records)
    ws.lake.write_text(f"chunks/{index}/ingest-{time.strftime('%Y%m%dT%H%M%S')}.jsonl", lines)
    ws.catalog.update("index", index, chunks=store.count(), documents=store.document_count())
    return report


def fetch_sources(paths: Sequence[str | Path], workdir: Path) -> list[Path]:
    """Local paths for ingest sources: remote URLs (s3://, oss://) are preflighted, then downloaded."""
    from domainrag.storage.options import open_fs, split_scheme
    from domainrag.storage.preflight import preflight, require

    remote = [str(p) for p in paths if split_scheme(str(p)) not in ("file", "local")]
    if remote:
        require(preflight(reads=remote))
    out: list[Path] = []
    for i, p in enumerate(paths):
        if str(p) not in remote:
            out.append(Path(str(p).removeprefix("file://")))
            continue
        fs, path, _ = open_fs(str(p))
        target = workdir / f"src{i}"
        if fs.isdir(path):
            fs.get(path.rstrip("/") + "/", str(target) + "/", recursive=True)
        else:
            target.mkdir(parents=True)
            target = target / Path(path).name
            fs.get_file(path, str(target))
        out.append(target)
    return out


def delete_index(ws: Workspace, name: str) -> None:
    ws.catalog.require("index", name)
    ws.store(name).drop()
    ws.lake.delete(f"chunks/{name}")
    ws.catalog.delete("index", name)
