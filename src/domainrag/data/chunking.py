"""Split documents into overlapping chunks with deterministic ids.

Chunk ids are ``<doc_id>::<n>::<hash of chunk text>``: re-ingesting the same document yields the
same ids (idempotent upserts), and an edited document yields new ids for the changed chunks.

A document with structure (:class:`~domainrag.data.blocks.Block` s from a reader) is chunked along
it: text is packed within one section and page, a table is one chunk (a long one is split into row
groups that each repeat the caption and header), and each chunk's metadata carries ``kind``,
``section`` (the heading path, `` > ``-joined) and ``page``.

A table is linked to the paragraphs around it: its chunks list, in ``metadata.children``, the chunk ids
of up to :data:`NEIGHBOURS` text (or slide) chunks before it and after it in the same section, and those
chunks list the table's chunk ids in ``metadata.tables``. Retrieval's child expansion
(``RetrievalConfig.expand_children``) follows ``children``, so a retrieved table pulls in the text that
explains it, in every format. Linked chunks hash the texts of their whole linked group into their ids:
editing one paragraph re-ids the group, so no stored chunk keeps a link to a chunk that is gone.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from domainrag.data.blocks import Block
from domainrag.data.loaders import Document
from domainrag.errors import DomainRagError


@dataclass(frozen=True)
class Chunk:
    chunk_id: str
    doc_id: str
    text: str
    position: int
    title: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "chunk_id": self.chunk_id,
            "doc_id": self.doc_id,
            "text": self.text,
            "position": self.position,
            "title": self.title,
            "metadata": self.metadata,
        }


_PARA = re.compile(r"\n\s*\n")
NEIGHBOURS = 2  # text chunks linked on each side of a table


def check_window(max_words: int, overlap_words: int) -> None:
    """Refuse a chunk window that would lose words: a negative overlap skips words between windows."""
    if max_words < 1 or overlap_words < 0 or overlap_words >= max_words:
        raise DomainRagError(f"chunk window of {max_words} words with an overlap of {overlap_words} is invalid",
                             hint="max_words must be at least 1 and overlap_words from 0 to max_words - 1 "
                                  "(--max-words / --overlap-words)")


def chunk_document(doc: Document, max_words: int = 120, overlap_words: int = 20, *,
                   contextual_header: bool = True) -> list[Chunk]:
    """Paragraph-aware word windows: paragraphs are packed up to ``max_words``; a longer
    paragraph is cut into windows overlapping by ``overlap_words``. ``contextual_header``: a structured
    chunk starts with its section path (off: the bare text).

    Written by hand because the splitters in the big frameworks drag in their whole stack; this
    is the part of them we need (and it keeps chunk boundaries stable across versions).
    """
    check_window(max_words, overlap_words)
    if doc.blocks:
        return _chunk_blocks(doc, max_words, overlap_words, contextual_header)
    return _make_chunks(doc, [(text, {}) for text in _pack(doc.text, max_words, overlap_words)])


def _pack(text: str, max_words: int, overlap_words: int) -> list[str]:
    """Paragraphs packed into windows of at most ``max_words`` words (long paragraphs cut with overlap)."""
    pieces: list[str] = []
    current: list[str] = []
    for para in (p.strip() for p in _PARA.split(text)):
        if not para:
            continue
        words = para.split()
        if len(words) > max_words:
            if current:
                pieces.append(" ".join(current))
                current = []
            step = max_words - overlap_words
            for start in range(0, len(words), step):
                pieces.append(" ".join(words[start : start + max_words]))
                if start + max_words >= len(words):
                    break
            continue
        if len(current) + len(words) > max_words and current:
            pieces.append(" ".join(current))
            current = []
        current.extend(words)
    if current:
        pieces.append(" ".join(current))
    return pieces


def _make_chunks(doc: Document, pieces: list[tuple[str, dict[str, Any]]],
                 links: dict[int, list[int]] | None = None) -> list[Chunk]:
    """Chunks with ids ``<doc_id>::<n>::<hash>``; ``links`` (table piece → neighbouring text pieces)
    become ``children`` / ``tables`` metadata, and a linked piece's hash covers its whole group."""
    links = links or {}
    group = _groups(len(pieces), links)
    salt = {root: hashlib.sha256("\x00".join(pieces[i][0] for i in members).encode("utf-8")).hexdigest()
            for root, members in _members(group).items() if len(members) > 1}
    ids = []
    for i, (text, _) in enumerate(pieces):
        extra = f"\x00{salt[group[i]]}" if group[i] in salt else ""
        ids.append(f"{doc.doc_id}::{i}::{hashlib.sha256((text + extra).encode('utf-8')).hexdigest()[:12]}")
    tables: dict[int, list[int]] = {}
    for table, texts in links.items():
        for t in texts:
            tables.setdefault(t, []).append(table)
    chunks = []
    for i, (text, extra_meta) in enumerate(pieces):
        meta = {**doc.metadata, **extra_meta}
        if links.get(i):
            meta["children"] = [ids[j] for j in links[i]]
        if tables.get(i):
            meta["tables"] = [ids[j] for j in sorted(tables[i])]
        chunks.append(Chunk(ids[i], doc.doc_id, text, i, doc.title, meta))
    return chunks


def _groups(n: int, links: dict[int, list[int]]) -> list[int]:
    """Union-find over the links: each piece's group representative."""
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, bs in links.items():
        for b in bs:
            parent[find(b)] = find(a)
    return [find(i) for i in range(n)]


def _members(group: list[int]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for i, root in enumerate(group):
        out.setdefault(root, []).append(i)
    return out


def _links(kinds: list[tuple[str, tuple[str, ...], int]]) -> dict[int, list[int]]:
    """Table piece → up to NEIGHBOURS text/slide pieces on each side in its section, not past another table.

    ``kinds`` is (kind, section, table number or -1) per piece; the pieces of one long table share the
    number, and each of them lists the same neighbours.
    """
    links: dict[int, list[int]] = {}
    i = 0
    while i < len(kinds):
        kind, section, table = kinds[i]
        if kind != "table":
            i += 1
            continue
        end = i
        while end + 1 < len(kinds) and kinds[end + 1][2] == table:
            end += 1
        around = _side(kinds, range(i - 1, -1, -1), section)[::-1] + _side(kinds, range(end + 1, len(kinds)), section)
        for j in range(i, end + 1):
            if around:
                links[j] = around
        i = end + 1
    return links


def _side(kinds: list[tuple[str, tuple[str, ...], int]], order: range, section: tuple[str, ...]) -> list[int]:
    out: list[int] = []
    for j in order:
        kind, sec, _ = kinds[j]
        if kind == "table" or sec != section or len(out) == NEIGHBOURS:
            break
        if kind in ("text", "slide"):
            out.append(j)
    return out


def _where(block: Block) -> dict[str, Any]:
    where: dict[str, Any] = {"kind": block.kind}
    if block.section:
        where["section"] = " > ".join(block.section)
    if block.page is not None:
        where["page"] = block.page
    return where


def _table_pieces(block: Block, max_words: int) -> list[str]:
    """A table as one piece, or (when longer than a few windows) row groups that repeat caption and header."""
    caption = f"{block.caption}\n\n" if block.caption else ""
    lines = block.text.splitlines()
    if len(block.text.split()) <= 3 * max_words or len(lines) <= 3:
        return [caption + block.text]
    head, body = lines[:2], lines[2:]
    groups: list[list[str]] = [[]]
    for row in body:
        if groups[-1] and len(" ".join(head + groups[-1] + [row]).split()) > 3 * max_words:
            groups.append([])
        groups[-1].append(row)
    return [caption + "\n".join(head + g) for g in groups]


def _headed(block: Block, text: str, on: bool) -> str:
    """``text`` under its section path: a chunk cut out of a section still names what it is about (the
    product a "Mechanical" paragraph belongs to), for BM25 and the embedder alike."""
    if not on or not block.section or (block.caption and block.section == (block.caption,)):
        return text  # (a sheet: its caption is its name, said once)
    return f"{' > '.join(block.section)}\n\n{text}"


def _chunk_blocks(doc: Document, max_words: int, overlap_words: int, header: bool) -> list[Chunk]:
    pieces: list[tuple[str, dict[str, Any]]] = []
    kinds: list[tuple[str, tuple[str, ...], int]] = []  # (kind, section, table number or -1) per piece
    run: list[Block] = []  # consecutive text blocks of one section and page, packed together

    def flush() -> None:
        if run:
            for text in _pack("\n\n".join(b.text for b in run), max_words, overlap_words):
                pieces.append((_headed(run[0], text, header), _where(run[0])))
                kinds.append((run[0].kind, run[0].section, -1))
            run.clear()

    for number, block in enumerate(doc.blocks):
        if block.kind == "table":
            flush()
            for text in _table_pieces(block, max_words):
                pieces.append((_headed(block, text, header), _where(block)))
                kinds.append(("table", block.section, number))
            continue
        if run and (block.kind, block.section, block.page) != (run[0].kind, run[0].section, run[0].page):
            flush()
        run.append(block)
    flush()
    return _make_chunks(doc, pieces, _links(kinds))
