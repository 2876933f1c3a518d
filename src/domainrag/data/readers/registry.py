"""The suffix → reader table that the format modules fill in (``@register(".pdf")``), and the page-progress hook."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from domainrag.data.blocks import ReadResult

Reader = Callable[[Path], ReadResult]
READERS: dict[str, Reader] = {}


def register(*suffixes: str) -> Callable[[Reader], Reader]:
    """Decorator: ``@register(".pdf")`` makes the function the reader of those suffixes."""

    def add(reader: Reader) -> Reader:
        for suffix in suffixes:
            READERS[suffix] = reader
        return reader

    return add


PageHook = Callable[[int, int], None]  # (pages done, pages in the file)
_page_hooks: list[PageHook] = []


@contextmanager
def page_progress(hook: PageHook) -> Iterator[None]:
    """Within the block, readers of paged formats report each page read to ``hook`` (a long PDF shows a
    progress bar by pages, also from a parsing worker process)."""
    _page_hooks.append(hook)
    try:
        yield
    finally:
        _page_hooks.remove(hook)


def report_page(done: int, total: int) -> None:
    """Called by a reader after each page."""
    for hook in _page_hooks:
        hook(done, total)
