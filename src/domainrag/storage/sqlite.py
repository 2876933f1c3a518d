"""Small SQLite files with short-lived connections: the catalogue and the chat-session store.

Autocommit (``isolation_level=None``) so every statement is its own short transaction, a 30 s
busy timeout so concurrent writers wait instead of failing, and WAL mode set when the file is opened.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import ClassVar


@contextmanager
def connect(path: str | Path, *pragmas: str) -> Iterator[sqlite3.Connection]:
    """An autocommit connection to ``path`` with ``PRAGMA <p>`` run for each of ``pragmas``; closed on exit."""
    con = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        for pragma in pragmas:
            con.execute(f"PRAGMA {pragma}")
        yield con
    finally:
        con.close()


class SQLiteFile:
    """One SQLite file: created with ``SCHEMA`` in WAL mode; ``PRAGMAS`` run on every connection."""

    SCHEMA: ClassVar[str]
    PRAGMAS: ClassVar[tuple[str, ...]] = ()

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as con:
            con.execute("PRAGMA journal_mode=WAL")
            con.executescript(self.SCHEMA)

    def _connect(self) -> AbstractContextManager[sqlite3.Connection]:
        return connect(self.path, *self.PRAGMAS)
