"""Ingest reports progress after every embedding batch, not once per written group."""

from __future__ import annotations

from pathlib import Path

from domainrag.data.loaders import Document
from domainrag.index.config import EmbeddedStoreConfig
from domainrag.index.embedded import EmbeddedStore
from domainrag.index.ingest import embed_text, ingest_documents

from ..evaluation.conftest import FakeEmbedder


class _CountingEmbedder(FakeEmbedder):
    def __init__(self) -> None:
        super().__init__("fake")
        self.calls: list[int] = []

    def encode(self, texts, batch_size=64):  # type: ignore[no-untyped-def]
        self.calls.append(len(texts))
        return super().encode(texts, batch_size)


def test_progress_moves_per_batch_and_every_chunk_is_written(tmp_path: Path) -> None:
    docs = [Document(f"d{i}.md", f"document {i} " + "word " * (i * 3 + 1), f"doc {i}") for i in range(11)]
    store = EmbeddedStore("idx", EmbeddedStoreConfig(), str(tmp_path / "lance"))
    embedder = _CountingEmbedder()
    seen: list[tuple[int, int]] = []
    report = ingest_documents(docs, store, embedder, batch_size=2, encode_group=4,
                              progress=lambda d, t: seen.append((d, t)))
    assert seen == [(0, 11), (2, 11), (4, 11), (6, 11), (8, 11), (10, 11), (11, 11)]  # one step per batch of 2
    assert embedder.calls == [2, 2, 2, 2, 2, 1]
    assert report.written == store.count() == 11
    # Vectors stay with their chunks although a group is embedded in length order: each chunk's own
    # vector finds that chunk first.
    for chunk in report.chunk_records:
        hits = store.dense_search(embedder.encode([embed_text(chunk)])[0], 1)
        assert hits[0].chunk_id == chunk.chunk_id
    again = ingest_documents(docs, store, embedder, batch_size=2)
    assert again.written == 0 and again.skipped_existing == 11


def test_contextual_header_off_embeds_and_stores_the_bare_text(tmp_path: Path) -> None:
    """ingest --no-contextual-header reaches the chunker and the embedder: neither title nor section path."""
    from domainrag.data.blocks import Block

    doc = Document("ctl.pdf", "", "CTL-400", {}, (Block("text", "It weighs 2.1 kg.", ("Datasheet", "Mechanical"), 1),))
    store = EmbeddedStore("idx", EmbeddedStoreConfig(), str(tmp_path / "lance"))
    embedder = _CountingEmbedder()
    seen: list[str] = []
    embedder.encode = lambda texts, batch_size=64: (seen.extend(texts), FakeEmbedder.encode(embedder, texts))[1]  # type: ignore[method-assign]
    report = ingest_documents([doc], store, embedder, contextual_header=False)
    assert seen == ["It weighs 2.1 kg."] and report.chunk_records[0].text == "It weighs 2.1 kg."
    seen.clear()
    ingest_documents([doc], store, embedder)  # on (the default): new ids, the old chunk removed as stale
    assert seen == ["CTL-400\nDatasheet > Mechanical\n\nIt weighs 2.1 kg."] and store.count() == 1


def test_vectors_embedded_while_parsing_are_used_not_embedded_again(tmp_path: Path) -> None:
    from domainrag.index.ingest import EmbedWhileParsing

    docs = [Document(f"d{i}.md", f"document {i} " + "word " * (i * 3 + 1), f"doc {i}") for i in range(6)]
    store = EmbeddedStore("idx", EmbeddedStoreConfig(), str(tmp_path / "lance"))
    embedder = _CountingEmbedder()
    early = EmbedWhileParsing(store, embedder, batch_size=2, max_words=120, overlap_words=20, contextual_header=True)
    early.loaded(docs[:4])  # four files parsed; two batches embedded before the rest arrive
    assert early.work() and not early.work() and embedder.calls == [2, 2] and len(early.vectors) == 4
    report = ingest_documents(docs, store, embedder, batch_size=2, vectors=early.vectors)
    assert sum(embedder.calls) == 6 and report.written == store.count() == 6  # only the two late ones embedded
    for chunk in report.chunk_records:  # each chunk stored with its own vector, early or late
        hits = store.dense_search(embedder.encode([embed_text(chunk)])[0], 1)
        assert hits[0].chunk_id == chunk.chunk_id
    again = EmbedWhileParsing(store, embedder, batch_size=2, max_words=120, overlap_words=20,
                              contextual_header=True)
    again.loaded(docs)
    assert not again.work() and again.vectors == {}  # chunks the index holds are not embedded again


def test_early_embedding_waits_until_the_ingest_is_big_enough_for_its_bulk_path(tmp_path: Path) -> None:
    """An encoder that picks its bulk path by the ingest's size gets no early batch until that many texts are
    queued: the early chunks then go the path the whole ingest takes."""
    from domainrag.index.ingest import EmbedWhileParsing

    docs = [Document(f"d{i}.md", f"document {i} " + "word " * (i * 3 + 1), f"doc {i}") for i in range(6)]
    store = EmbeddedStore("idx", EmbeddedStoreConfig(), str(tmp_path / "lance"))
    embedder = _CountingEmbedder()
    embedder.bulk_min_texts = 5  # type: ignore[attr-defined]
    early = EmbedWhileParsing(store, embedder, batch_size=2, max_words=120, overlap_words=20, contextual_header=True)
    early.loaded(docs[:4])
    assert not early.work() and embedder.calls == []  # 4 queued of the 5 needed: it waits
    early.loaded(docs[4:])
    assert early.work() and embedder.calls == [2]
