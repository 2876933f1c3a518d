"""``storage/sqlite.py``: short-lived autocommit connections and the schema-on-open base class."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from domainrag.storage.sqlite import SQLiteFile, connect


class Notes(SQLiteFile):
    SCHEMA = "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL);"
    PRAGMAS = ("busy_timeout=1234", "foreign_keys=ON")

    def add(self, body: str) -> None:
        with self._connect() as con:
            con.execute("INSERT INTO notes(body) VALUES (?)", (body,))

    def bodies(self) -> list[str]:
        with self._connect() as con:
            return [r[0] for r in con.execute("SELECT body FROM notes ORDER BY id")]


def test_file_is_created_with_its_schema_in_wal_mode(tmp_path: Path) -> None:
    db = Notes(tmp_path / "deep" / "folder" / "notes.db")  # missing parent folders are created
    assert db.path.is_file()
    with sqlite3.connect(db.path) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert con.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall() == [("notes",)]


def test_reopening_keeps_rows_and_schema_is_idempotent(tmp_path: Path) -> None:
    Notes(tmp_path / "n.db").add("first")
    again = Notes(tmp_path / "n.db")
    again.add("second")
    assert again.bodies() == ["first", "second"]


def test_writes_are_autocommitted_and_visible_to_other_connections(tmp_path: Path) -> None:
    db = Notes(tmp_path / "n.db")
    with db._connect() as con:
        con.execute("INSERT INTO notes(body) VALUES ('x')")
        assert not con.in_transaction  # autocommit: no transaction left open
        with sqlite3.connect(db.path) as other:
            assert other.execute("SELECT body FROM notes").fetchall() == [("x",)]


def test_pragmas_run_on_every_connection(tmp_path: Path) -> None:
    db = Notes(tmp_path / "n.db")
    with db._connect() as con:
        assert con.execute("PRAGMA busy_timeout").fetchone()[0] == 1234
        assert con.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_connect_closes_the_connection_on_exit_even_after_an_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), connect(tmp_path / "c.db") as con:
        kept = con
        raise RuntimeError("boom")
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        kept.execute("SELECT 1")


def test_connect_waits_for_a_busy_database_by_default(tmp_path: Path) -> None:
    with connect(tmp_path / "c.db") as con:
        assert con.execute("PRAGMA busy_timeout").fetchone()[0] == 30_000
        assert con.isolation_level is None
