"""Control-plane catalogue: datasets, jobs, models, indexes and apps in one SQLite file.

WAL mode keeps it safe for many concurrent readers (the API server, job processes, the CLI)
with one writer at a time; every write is its own short transaction.
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any, Literal

from domainrag.errors import ConflictError, NotFoundError
from domainrag.storage.sqlite import SQLiteFile

Kind = Literal["dataset", "job", "model", "index", "app", "key"]
KINDS: tuple[str, ...] = ("dataset", "job", "model", "index", "app", "key")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    data TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (kind, name)
);
"""


class Catalog(SQLiteFile):
    """Typed-by-kind JSON records keyed by (kind, name)."""

    SCHEMA = _SCHEMA
    PRAGMAS = ("busy_timeout=30000",)

    @staticmethod
    def _check_kind(kind: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown catalogue kind {kind!r}; expected one of {KINDS}")

    def create(self, kind: Kind, name: str, data: dict[str, Any]) -> dict[str, Any]:
        """Insert a new record; refuses if one with this name exists."""
        self._check_kind(kind)
        now = time.time()
        record = {**data, "name": name}
        with self._connect() as con:
            try:
                con.execute(
                    "INSERT INTO objects(kind, name, data, created_at, updated_at) VALUES (?,?,?,?,?)",
                    (kind, name, json.dumps(record, default=str), now, now),
                )
            except sqlite3.IntegrityError as exc:
                raise ConflictError(
                    f"{kind} '{name}' already exists", hint=f"pick another name or delete the {kind} first"
                ) from exc
        return {**record, "created_at": now, "updated_at": now}

    def put(self, kind: Kind, name: str, data: dict[str, Any]) -> dict[str, Any]:
        """Insert or replace a record."""
        self._check_kind(kind)
        now = time.time()
        record = {**data, "name": name}
        with self._connect() as con:
            con.execute(
                "INSERT INTO objects(kind, name, data, created_at, updated_at) VALUES (?,?,?,?,?) "
                "ON CONFLICT(kind, name) DO UPDATE SET data=excluded.data, updated_at=excluded.updated_at",
                (kind, name, json.dumps(record, default=str), now, now),
            )
        return record

    def update(self, kind: Kind, name: str, **fields: Any) -> dict[str, Any]:
        """Merge fields into an existing record atomically."""
        self._check_kind(kind)
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            row = con.execute("SELECT data FROM objects WHERE kind=? AND name=?", (kind, name)).fetchone()
            if row is None:
                con.execute("ROLLBACK")
                raise NotFoundError(f"{kind} '{name}' not found")
            record = {**json.loads(row[0]), **fields}
            con.execute(
                "UPDATE objects SET data=?, updated_at=? WHERE kind=? AND name=?",
                (json.dumps(record, default=str), time.time(), kind, name),
            )
            con.execute("COMMIT")
        return record

    def get(self, kind: Kind, name: str) -> dict[str, Any] | None:
        self._check_kind(kind)
        with self._connect() as con:
            row = con.execute(
                "SELECT data, created_at, updated_at FROM objects WHERE kind=? AND name=?", (kind, name)
            ).fetchone()
        if row is None:
            return None
        return {**json.loads(row[0]), "created_at": row[1], "updated_at": row[2]}

    def require(self, kind: Kind, name: str) -> dict[str, Any]:
        """Like :meth:`get` but raises a helpful :class:`NotFoundError`."""
        record = self.get(kind, name)
        if record is None:
            known = ", ".join(r["name"] for r in self.list(kind)) or "none"
            raise NotFoundError(
                f"{kind} '{name}' not found (known: {known})",
                hint=f"run `domainrag {kind} list` to see what exists",
            )
        return record

    def list(self, kind: Kind) -> list[dict[str, Any]]:
        self._check_kind(kind)
        with self._connect() as con:
            rows = con.execute(
                "SELECT data, created_at, updated_at FROM objects WHERE kind=? ORDER BY created_at", (kind,)
            ).fetchall()
        return [{**json.loads(d), "created_at": c, "updated_at": u} for d, c, u in rows]

    def delete(self, kind: Kind, name: str) -> bool:
        self._check_kind(kind)
        with self._connect() as con:
            cur = con.execute("DELETE FROM objects WHERE kind=? AND name=?", (kind, name))
        return cur.rowcount > 0
