"""Split documents into overlapping chunks with deterministic ids.

Chunk ids are ``<doc_id>::<n>::<hash of chunk text>``: re-ingesting the same document yields the
same ids (idempotent upserts), and an edited document yields new ids for the changed chunks.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from domainrag.data.loaders import Document


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


def chunk_document(doc: Document, max_words: int = 120, overlap_words: int = 20) -> list[Chunk]:
    """Paragraph-aware word windows: paragraphs are packed up to ``max_words``; a longer
    paragraph is cut into windows overlapping by ``overlap_words``.

    Written by hand because the splitters in the big frameworks drag in their whole stack; this
    is the part of them we need (and it keeps chunk boundaries stable across versions).
    """
    if overlap_words >= max_words:
        raise ValueError("overlap_words must be smaller than max_words")
    pieces: list[str] = []
    current: list[str] = []
    for para in (p.strip() for p in _PARA.split(doc.text)):
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
    chunks = []
    for i, text in enumerate(pieces):
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
        chunks.append(
            Chunk(f"{doc.doc_id}::{i}::{digest}", doc.doc_id, text, i, doc.title, dict(doc.metadata))
        )
    return chunks
