"""Ingest sources: the files under the paths or URLs given to an ingest, each with its document id and origin.

A document id is the file's path relative to the ingest root it was found under (a folder argument is
its own root, a file argument's root is its folder), so ``a/notes.txt`` and ``b/notes.txt`` under one
folder are two documents, and ingesting the same tree again yields the same ids. The origin (``uri``:
a ``file://`` URI or the remote URL, never a temporary download path) tells two same-named files from
different roots apart, so an ingest can refuse the second instead of overwriting the first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from domainrag.data.loaders import Document, load_file
from domainrag.errors import DatasetError, DomainRagError
from domainrag.storage.options import open_fs, split_scheme
from domainrag.storage.preflight import preflight, require


@dataclass(frozen=True)
class SourceFile:
    """One file to ingest: where to read it now, its document id, and where it came from."""

    path: Path
    doc_id: str
    uri: str


def _is_remote(path: str | Path) -> bool:
    return split_scheme(str(path)) not in ("file", "local")


def _under(root: Path, uri_root: str) -> list[SourceFile]:
    """Files below ``root`` (sorted), ids relative to it, origins below ``uri_root``.

    Hidden files and folders (``.git``, ``.DS_Store``) are left out; other unsupported files are kept so
    that loading reports each one instead of skipping it silently.
    """
    files = sorted(f for f in root.rglob("*")
                   if f.is_file() and not any(part.startswith(".") for part in f.relative_to(root).parts))
    out = []
    for f in files:
        rel = f.relative_to(root).as_posix()
        out.append(SourceFile(f, rel, f"{uri_root.rstrip('/')}/{rel}"))
    return out


def local_sources(paths: Sequence[str | Path]) -> list[SourceFile]:
    """Expand local files and folders (recursively) into supported files with their ids and origins."""
    out: list[SourceFile] = []
    for p in (Path(str(p).removeprefix("file://")) for p in paths):
        if p.is_dir():
            out.extend(_under(p, p.expanduser().resolve().as_uri()))
        elif p.is_file():
            out.append(SourceFile(p, p.name, p.expanduser().resolve().as_uri()))
        else:
            raise DatasetError(str(p), "no such file or folder")
    return out


def fetch_sources(paths: Sequence[str | Path], workdir: Path) -> list[SourceFile]:
    """Like :func:`local_sources`, but remote URLs (s3://, oss://) are preflighted, then downloaded into
    ``workdir``; their ids are relative to the URL given and their origins are remote URLs."""
    remote = [str(p) for p in paths if _is_remote(p)]
    if remote:
        require(preflight(reads=remote))
    out: list[SourceFile] = []
    for i, p in enumerate(paths):
        if not _is_remote(p):
            out.extend(local_sources([p]))
            continue
        fs, path, _ = open_fs(str(p))
        target = workdir / f"src{i}"
        if fs.isdir(path):
            fs.get(path.rstrip("/") + "/", str(target) + "/", recursive=True)
            out.extend(_under(target, str(p)))
        else:
            target.mkdir(parents=True)
            local = target / Path(path).name
            fs.get_file(path, str(local))
            out.append(SourceFile(local, local.name, str(p)))
    return out


def load_sources(
    sources: Sequence[SourceFile], errors: list[str], outcomes: dict[str, str] | None = None
) -> list[Document]:
    """Load every source; a bad file (or bad JSONL line) is appended to ``errors`` and skipped, the rest continue.

    ``outcomes`` receives one entry per file, keyed by its origin: ``ingested``, ``warned`` (read in part:
    a bad line, a page without text) or ``skipped`` (nothing read), so the counts add up to the files found.
    """
    docs: list[Document] = []
    for src in sources:
        before = len(errors)
        try:
            loaded = load_file(src.path, src.doc_id, source=src.uri, errors=errors)
            docs.extend(loaded)
            status = "skipped" if not loaded else "warned" if len(errors) > before else "ingested"
        except DomainRagError as exc:
            errors.append(str(exc))
            status = "skipped"
        if outcomes is not None:
            outcomes[src.uri] = status
    return docs
