"""Ingest sources: the files under the paths or URLs given to an ingest, each with its document id and origin.

A document id is the file's path relative to the ingest root it was found under (a folder argument is
its own root, a file argument's root is its folder), so ``a/notes.txt`` and ``b/notes.txt`` under one
folder are two documents, and ingesting the same tree again yields the same ids. The origin (``uri``:
a ``file://`` URI or the remote URL, never a temporary download path) tells two same-named files from
different roots apart, so an ingest can refuse the second instead of overwriting the first.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from queue import Empty
from typing import Any, Protocol

from domainrag.data.loaders import TEXT_SUFFIXES, Document, load_file
from domainrag.data.readers import READERS
from domainrag.data.readers.registry import PageHook, page_progress
from domainrag.errors import DatasetError, DomainRagError
from domainrag.hardware import usable_cpus
from domainrag.storage.options import open_fs, split_scheme
from domainrag.storage.preflight import preflight, require

log = logging.getLogger(__name__)


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


ParseProgress = Callable[[str, int, int], None]  # (label, done, total): files parsed, pages of a long file


class Meanwhile(Protocol):
    """Work for the ingesting process while worker processes parse (e.g. embedding what is parsed already)."""

    def loaded(self, docs: list[Document]) -> None:
        """One file's documents, as soon as its worker returns them."""

    def work(self) -> bool:
        """Do one short unit of work (one batch: parse progress waits for it); whether more is left."""


PAGE_BAR_MIN = 20  # a file with at least this many pages gets its own progress bar by pages


PARALLEL_MIN_BYTES = 4_000_000  # structured files smaller than this in all parse faster than workers start


def parse_workers(sources: Sequence[SourceFile]) -> int:
    """Worker processes for parsing: ``DOMAINRAG_PARSE_WORKERS`` if set (0 or 1: parse in this process),
    else one per CPU up to 4 where at least two files need a structured reader (PDF, Office, scans) and
    they hold :data:`PARALLEL_MIN_BYTES` together; none otherwise (a worker takes a second or two to start)."""
    structured = [s.path for s in sources if s.path.suffix.lower() in READERS
                  and s.path.suffix.lower() not in TEXT_SUFFIXES]
    env = os.environ.get("DOMAINRAG_PARSE_WORKERS", "").strip()
    if env:
        if not env.isdigit():
            raise DomainRagError(f"DOMAINRAG_PARSE_WORKERS must be a whole number, not {env!r}",
                                 hint="unset it, or 0 to parse in the ingesting process")
        return min(int(env), len(sources))
    if len(structured) < 2 or sum(p.stat().st_size for p in structured) < PARALLEL_MIN_BYTES:
        return 0
    return min(4, usable_cpus(), len(structured))


def load_sources(
    sources: Sequence[SourceFile],
    errors: list[str],
    outcomes: dict[str, str] | None = None,
    *,
    workers: int | None = None,
    progress: ParseProgress | None = None,
    meanwhile: Meanwhile | None = None,
) -> list[Document]:
    """Load every source; a bad file (or bad JSONL line) is appended to ``errors`` and skipped, the rest continue.

    ``outcomes`` receives one entry per file, keyed by its origin: ``ingested``, ``warned`` (read in part:
    a bad line, a page without text) or ``skipped`` (nothing read), so the counts add up to the files found.

    With ``workers`` > 1 (default: :func:`parse_workers`) files are parsed in that many worker processes
    (PDF layout analysis is pure Python and holds the GIL, so threads would not help); the results are
    taken in file order, so documents, errors and outcomes are exactly those of parsing in this process.
    ``progress`` gets ``("parse files", done, total)`` and, for a file of many pages, ``(name, page, pages)``.
    ``meanwhile`` is told each file's documents as soon as a worker returns them (in any order) and is given
    this process's time while the workers parse (:class:`Meanwhile`), where the CPU has more cores than
    workers; parsing in this process, or workers on every core, leave no such time.
    """
    n = parse_workers(sources) if workers is None else min(workers, len(sources))
    if usable_cpus() <= n:
        meanwhile = None  # no core left for it: sharing the workers' cores slowed a whole ingest down (benchmarks/)
    results = _parallel(sources, n, progress, meanwhile) if n > 1 else _serial(sources, progress)
    docs: list[Document] = []
    for src, (loaded, new_errors, status) in zip(sources, results, strict=True):
        docs.extend(loaded)
        errors.extend(new_errors)
        if outcomes is not None:
            outcomes[src.uri] = status
    return docs


_Result = tuple[list[Document], list[str], str]


def load_one(src: SourceFile, pages: PageHook | None = None) -> _Result:
    """One file's documents, its error lines and its outcome (the unit a parsing worker runs)."""
    errors: list[str] = []
    try:
        if pages is None:
            loaded = load_file(src.path, src.doc_id, source=src.uri, errors=errors)
        else:
            with page_progress(pages):
                loaded = load_file(src.path, src.doc_id, source=src.uri, errors=errors)
        status = "skipped" if not loaded else "warned" if errors else "ingested"
    except DomainRagError as exc:
        loaded, status = [], "skipped"
        errors.append(str(exc))
    return loaded, errors, status


def _page_reporter(progress: ParseProgress | None, src: SourceFile) -> PageHook | None:
    if progress is None:
        return None

    def pages(done: int, total: int) -> None:
        if total >= PAGE_BAR_MIN:
            progress(src.path.name, done, total)

    return pages


def _serial(sources: Sequence[SourceFile], progress: ParseProgress | None) -> list[_Result]:
    out = []
    for i, src in enumerate(sources):
        out.append(load_one(src, _page_reporter(progress, src)))
        if progress:
            progress("parse files", i + 1, len(sources))
    return out


_QUEUE: Any = None  # in a parsing worker: where page progress goes back to the ingesting process


def _init_worker(queue: Any) -> None:
    global _QUEUE
    _QUEUE = queue


def _load_in_worker(src: SourceFile, report_pages: bool) -> _Result:
    def pages(done: int, total: int) -> None:
        if total >= PAGE_BAR_MIN:
            _QUEUE.put((src.path.name, done, total))

    return load_one(src, pages if report_pages else None)


def _parallel(sources: Sequence[SourceFile], workers: int, progress: ParseProgress | None,
              meanwhile: Meanwhile | None = None) -> list[_Result]:
    """Parse in worker processes; results in file order. Workers are spawned, not forked: the ingesting
    process may already hold the embedder's threads (torch, OpenMP), which a fork would copy half-held."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    done = 0
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(queue,)) as pool:
        futures = [pool.submit(_load_in_worker, src, progress is not None) for src in sources]
        pending = set(futures)
        busy = False  # whether ``meanwhile`` has work left: then look at the workers without waiting
        while pending:
            finished, pending = wait(pending, timeout=0 if busy else 0.25, return_when=FIRST_COMPLETED)
            _drain(queue, progress)
            done += len(finished)
            if progress and finished:
                progress("parse files", done, len(sources))
            if meanwhile is not None:
                try:
                    for future in finished:
                        if future.exception() is None:
                            meanwhile.loaded(future.result()[0])
                    busy = bool(pending) and meanwhile.work()
                except Exception as exc:  # optional work ahead of time: its failure must not cost the parse
                    log.warning("work alongside parsing stopped (%s: %s); it is done after parsing instead",
                                type(exc).__name__, exc)
                    meanwhile, busy = None, False
    # After the pool is shut down: a worker's queue thread flushes its last page events when the worker exits,
    # and they can arrive after the worker's result (the result travels on another pipe).
    _drain(queue, progress)
    return [_result(src, f) for src, f in zip(sources, futures, strict=True)]


def _drain(queue: Any, progress: ParseProgress | None) -> None:
    while True:
        try:
            label, done, total = queue.get_nowait()
        except Empty:
            return
        if progress:
            progress(label, done, total)


def _result(src: SourceFile, future: Future[_Result]) -> _Result:
    """A worker's result; a worker that died (a parsing library crashed the process) skips only its file."""
    try:
        return future.result()
    except BrokenProcessPool as exc:
        return [], [f"{src.path}: the parsing worker died ({exc or 'killed'}); nothing read from this file"], "skipped"
