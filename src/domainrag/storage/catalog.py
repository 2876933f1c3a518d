"""Control-plane catalogue: datasets, jobs, models, indexes and apps in one SQLite file.

WAL mode keeps it safe for many concurrent readers (the API server, job processes, the CLI)
with one writer at a time; every write is its own short transaction.

Portable: a string in a record that lies under one of the catalogue's ``roots`` (the lake, the
workspace folder) is stored relative to it as ``{lake}/raw/docs`` and resolved against the roots of
whoever opens the file, so a workspace moved, copied or synced elsewhere still finds its files.
Catalogues written with absolute paths are converted once when opened (``PRAGMA user_version``).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path
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


# Version 1: paths under a root are stored as {root-name}/key (version 0 stored them absolute).
_PORTABLE_VERSION = 1


class Roots:
    """Named root locations (local folders or URLs) and the portable form of strings under them."""

    def __init__(self, roots: Mapping[str, str] | None = None) -> None:
        # Longest root first, so a root inside another (the workspace inside the lake) wins; on a
        # tie (a local lake is the workspace folder) the first given wins.
        given = [(name, root.rstrip("/")) for name, root in (roots or {}).items() if root]
        self.roots = sorted(given, key=lambda item: -len(item[1]))
        self._by_name = dict(given)

    def relative(self, value: Any, old_roots: Mapping[str, str] | None = None) -> Any:
        """``value`` with every string under a root made root-relative (``old_roots``: more root -> name)."""
        roots = self.roots
        if old_roots:  # stable sort: on a tie a current root wins over an old one
            roots = sorted([*roots, *((n, r.rstrip("/")) for r, n in old_roots.items())], key=lambda x: -len(x[1]))
        return self._relative(value, roots)

    def _relative(self, value: Any, roots: list[tuple[str, str]]) -> Any:
        if isinstance(value, dict):
            return {k: self._relative(v, roots) for k, v in value.items()}
        if isinstance(value, list):
            return [self._relative(v, roots) for v in value]
        if isinstance(value, str):
            for name, root in roots:
                if value == root or value.startswith(root + "/"):
                    return "{" + name + "}" + value[len(root):]
        return value

    def absolute(self, value: Any) -> Any:
        """``value`` with every ``{name}/...`` string resolved against the named root."""
        if isinstance(value, dict):
            return {k: self.absolute(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.absolute(v) for v in value]
        if isinstance(value, str) and value.startswith("{"):
            name, brace, rest = value[1:].partition("}")
            if brace and name in self._by_name and (not rest or rest.startswith("/")):
                return self._by_name[name] + rest
        return value


class Catalog(SQLiteFile):
    """Typed-by-kind JSON records keyed by (kind, name); paths under ``roots`` stored root-relative.

    ``roots`` maps a name to a location, e.g. ``{"lake": "s3://bucket/lake", "workspace": "/srv/ws"}``;
    without roots strings are stored as given.
    """

    SCHEMA = _SCHEMA
    PRAGMAS = ("busy_timeout=30000",)

    def __init__(self, path: str | Path, roots: Mapping[str, str] | None = None) -> None:
        self.roots = Roots(roots)
        super().__init__(path)
        if self.roots.roots:
            self._make_portable()

    def _dump(self, record: dict[str, Any]) -> str:
        return json.dumps(self.roots.relative(record), default=str)

    def _load(self, text: str) -> dict[str, Any]:
        return self.roots.absolute(json.loads(text))

    def _make_portable(self) -> None:
        """Convert a catalogue written with absolute paths (version 0) to root-relative ones, once.

        Paths under today's roots convert directly. A catalogue that was moved before converting
        still holds its old location: model and job records name their lake key next to its URL
        (``key``/``uri``, ``prefix``/``uri``), which gives the old lake root, converted as the lake.
        """
        with self._connect() as con:
            if con.execute("PRAGMA user_version").fetchone()[0] >= _PORTABLE_VERSION:
                return
            con.execute("BEGIN IMMEDIATE")
            rows = con.execute("SELECT kind, name, data FROM objects").fetchall()
            old_roots: dict[str, str] = {}
            for _, _, data in rows:
                record = json.loads(data)
                key, uri = record.get("key") or record.get("prefix"), record.get("uri")
                if isinstance(key, str) and isinstance(uri, str) and key and uri.endswith("/" + key):
                    old_roots[uri[: -len(key) - 1]] = "lake"
            for kind, name, data in rows:
                converted = json.dumps(self.roots.relative(json.loads(data), old_roots), default=str)
                if converted != data:
                    con.execute("UPDATE objects SET data=? WHERE kind=? AND name=?", (converted, kind, name))
            con.execute(f"PRAGMA user_version={_PORTABLE_VERSION}")
            con.execute("COMMIT")

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
                    (kind, name, self._dump(record), now, now),
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
                (kind, name, self._dump(record), now, now),
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
            record = {**self._load(row[0]), **fields}
            con.execute(
                "UPDATE objects SET data=?, updated_at=? WHERE kind=? AND name=?",
                (self._dump(record), time.time(), kind, name),
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
        return {**self._load(row[0]), "created_at": row[1], "updated_at": row[2]}

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
        return [{**self._load(d), "created_at": c, "updated_at": u} for d, c, u in rows]

    def delete(self, kind: Kind, name: str) -> bool:
        self._check_kind(kind)
        with self._connect() as con:
            cur = con.execute("DELETE FROM objects WHERE kind=? AND name=?", (kind, name))
        return cur.rowcount > 0
