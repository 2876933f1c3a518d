"""Readers of structured formats, one module per format family, each built on a well-kept library.

``READERS`` maps a file suffix to a function ``read(path) -> ReadResult``. A reader raises
:class:`~domainrag.errors.DatasetError` for a file it cannot read (encrypted, corrupt) and returns
warnings for what it read only in part; a file that yields no text at all is refused by the loader,
never an empty document counted as ingested. Each module imports its parsing library inside its
reader, so listing the supported formats costs nothing.
"""

from __future__ import annotations

from domainrag.data.readers import (
    images,  # noqa: F401 (registers)
    office,  # noqa: F401 (registers)
    pdf,  # noqa: F401 (registers)
    sheets,  # noqa: F401 (registers)
)
from domainrag.data.readers.registry import READERS, Reader

__all__ = ["READERS", "Reader"]
