"""The suffix → reader table that the format modules fill in (``@register(".pdf")``)."""

from __future__ import annotations

from collections.abc import Callable
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
