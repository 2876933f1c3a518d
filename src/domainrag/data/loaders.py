"""Load raw documents from files: plain formats (txt, md, html, jsonl) here, structured ones (PDF, Office,
spreadsheets, scans) through :mod:`domainrag.data.readers` into :class:`~domainrag.data.blocks.Block` s."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from domainrag.data.blocks import Block
from domainrag.data.formats import parse_jsonl
from domainrag.data.readers import READERS, markup
from domainrag.errors import DatasetError

TEXT_SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm", ".jsonl")
SUPPORTED_SUFFIXES = TEXT_SUFFIXES + tuple(s for s in READERS if s not in TEXT_SUFFIXES)


@dataclass(frozen=True)
class Document:
    """A source document: a stable id (unique within an index), text and metadata (``source``: its origin)."""

    doc_id: str
    text: str
    title: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    blocks: tuple[Block, ...] = ()  # structure from a reader (sections, pages, tables); empty for plain text

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()[:16]


def _title_from_markdown(text: str, fallback: str) -> str:
    for line in text.splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return fallback


def parse_html(raw: str) -> tuple[str, str]:
    """(title, visible text) of an HTML page; scripts/styles dropped."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(raw, "html.parser")
    for tag in soup(["script", "style", "noscript"]):
        tag.decompose()
    title = soup.title.get_text(strip=True) if soup.title else ""
    text = soup.get_text("\n")
    text = re.sub(r"\n\s*\n+", "\n\n", text).strip()
    return title, text


def _jsonl_document(path: Path, lineno: int, line: str, name: str, source: str | None) -> Document | None:
    """The document on one JSONL line (None for a blank line); a bad line raises naming file:line."""
    for _, obj in parse_jsonl(path, [line], first_line=lineno):
        text = obj.get("text") or obj.get("content")
        if not isinstance(text, str) or not text.strip():
            raise DatasetError(
                str(path), "missing or empty text", line=lineno, field="text",
                hint='each line needs {"id": ..., "text": ...} (optional "title", "metadata")',
            )
        doc_id = str(obj.get("id") or obj.get("_id") or f"{name}#{lineno}")
        meta = dict(obj.get("metadata")) if isinstance(obj.get("metadata"), dict) else {}
        if source:
            meta.setdefault("source", source)
        return Document(doc_id=doc_id, text=text, title=str(obj.get("title") or ""), metadata=meta)
    return None


def _read_jsonl(path: Path, raw: str, name: str, source: str | None, errors: list[str] | None) -> Iterator[Document]:
    for lineno, line in enumerate(raw.splitlines(), start=1):
        try:
            doc = _jsonl_document(path, lineno, line, name, source)
        except DatasetError as exc:
            if errors is None:
                raise
            errors.append(str(exc))  # the good lines still go in; this one is reported by file:line
            continue
        if doc is not None:
            yield doc


def load_file(
    path: Path, doc_id: str | None = None, *, source: str | None = None, errors: list[str] | None = None
) -> list[Document]:
    """Load one file into documents (a JSONL file may hold many).

    ``doc_id`` defaults to the file name; ``source`` (the file's origin URI) is recorded in each
    document's metadata (default: the path). With an ``errors`` list, a malformed JSONL line is
    appended to it and skipped; without one it raises.
    """
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise DatasetError(
            str(path), f"unsupported file type '{suffix}'", hint=f"supported: {', '.join(SUPPORTED_SUFFIXES)}"
        )
    if suffix in READERS and suffix not in TEXT_SUFFIXES:
        return [_structured(path, suffix, doc_id or path.name, source or str(path), errors)]
    try:
        raw = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetError(str(path), f"not UTF-8 text (byte {exc.start})", hint="convert it to UTF-8") from exc
    if "\x00" in raw:
        raise DatasetError(str(path), f"binary content (NUL byte at offset {raw.index(chr(0))})",
                           hint=f"only text files are ingested: {', '.join(SUPPORTED_SUFFIXES)}")
    name = doc_id or path.name
    origin = source or str(path)
    if suffix == ".jsonl":
        return list(_read_jsonl(path, raw, name, source, errors))
    if suffix in (".html", ".htm"):
        title, text = parse_html(raw)
        structure = markup.html_blocks(raw)  # None without a table: the page stays plain text
        docs = [Document(name, text, title or path.stem, {"source": origin, "format": "html"},
                         tuple(structure.blocks) if structure else ())]
    else:
        markdown = suffix in (".md", ".markdown")
        title = _title_from_markdown(raw, path.stem) if markdown else path.stem
        structure = markup.markdown_blocks(raw) if markdown else None
        docs = [Document(name, raw.strip(), title, {"source": origin, "format": suffix.lstrip(".")},
                         tuple(structure.blocks) if structure else ())]
    if not docs[0].text.strip():
        raise DatasetError(str(path), "document is empty")
    return docs


def _structured(path: Path, suffix: str, name: str, origin: str, errors: list[str] | None) -> Document:
    """One document from a structured reader; its warnings join ``errors`` (so the ingest summary names
    them), and a file without any text is refused rather than ingested empty."""
    result = READERS[suffix](path)
    blocks = tuple(b for b in result.blocks if b.text.strip())
    for warning in result.warnings:
        if errors is None:
            continue
        errors.append(f"{path}: warning: {warning}")
    if not blocks:
        reason = "; ".join(result.warnings) or "no text found"
        raise DatasetError(str(path), f"nothing to ingest ({reason})")
    text = "\n\n".join(b.text for b in blocks)
    meta = {"source": origin, "format": suffix.lstrip(".")}
    return Document(name, text, result.title or path.stem, meta, blocks)


def iter_files(paths: Iterable[str | Path]) -> list[Path]:
    """Expand files and folders (recursively) into supported files, sorted for determinism."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in SUPPORTED_SUFFIXES))
        elif p.is_file():
            out.append(p)
        else:
            raise DatasetError(str(p), "no such file or folder")
    return out
