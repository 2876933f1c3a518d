"""Multi-turn chat: per-session history in a small SQLite file, and follow-up condensation.

Sessions live in ``<workspace>/sessions.db`` (not the catalogue: they are high-churn data, not
control-plane objects). A session belongs to one app and to the API key that opened it; idle
sessions are pruned after :data:`SESSION_TTL_S`.

Condensation is deliberately simple (no extra LLM call): a follow-up that is short or refers back
("what about *its* voltage?") is retrieved with the last self-contained question prepended, so
the retriever sees the entity the pronoun stands for. The model itself gets the prior turns as
chat history.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Sequence

from domainrag.errors import DomainRagError, NotFoundError
from domainrag.storage.sqlite import SQLiteFile

SESSION_TTL_S = 7 * 24 * 3600
HISTORY_TURNS = 3  # user/assistant pairs given to the model
SHORT_QUESTION_WORDS = 4

_SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{8,128}$")
_WORD = re.compile(r"[a-z0-9']+")
_REFERRING = frozenset({
    "it", "its", "it's", "itself", "they", "them", "their", "theirs", "this", "that", "these", "those",
    "he", "him", "his", "she", "her", "there", "one", "ones", "same", "former", "latter", "above", "previous",
})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY, app TEXT NOT NULL, owner TEXT NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS turns (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    question TEXT NOT NULL, answer TEXT NOT NULL, created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS turns_session ON turns(session_id, seq);
"""


def needs_context(question: str) -> bool:
    """True for follow-ups that cannot be retrieved on their own (short, or with a back-reference)."""
    words = _WORD.findall(question.lower())
    return len(words) <= SHORT_QUESTION_WORDS or bool(_REFERRING.intersection(words))


def condense_query(question: str, history: Sequence[dict[str, str]]) -> str:
    """The retrieval query for ``question`` given prior chat turns.

    Walks the earlier user questions keeping the last self-contained one as the anchor; a follow-up
    that needs context is retrieved as ``anchor + " " + question``. Bounded to two questions, so
    long conversations never grow the query.
    """
    anchor = ""
    for message in history:
        if message.get("role") == "user" and message.get("content", "").strip():
            text = message["content"].strip()
            if not anchor or not needs_context(text):
                anchor = text
    if anchor and needs_context(question):
        return f"{anchor} {question.strip()}"
    return question


class SessionStore(SQLiteFile):
    """Sessions and their turns; every call is its own short transaction (WAL, like the catalogue)."""

    SCHEMA = _SCHEMA
    PRAGMAS = ("foreign_keys=ON",)

    def open(self, session_id: str | None, app: str, owner: str = "") -> str:
        """Resume ``session_id`` (must belong to this app and owner) or start one; returns its id.

        A client-chosen id that does not exist yet starts a new session under that id.
        """
        now = time.time()
        with self._connect() as con:
            if session_id is None:
                con.execute("DELETE FROM sessions WHERE updated_at < ?", (now - SESSION_TTL_S,))
                session_id = uuid.uuid4().hex
            elif not _SESSION_ID.match(session_id):
                raise DomainRagError("session_id must be 8-128 characters of letters, digits, '-' or '_'")
            row = con.execute("SELECT app, owner FROM sessions WHERE id=?", (session_id,)).fetchone()
            if row is None:
                con.execute("INSERT INTO sessions VALUES (?,?,?,?,?)", (session_id, app, owner, now, now))
            elif tuple(row) != (app, owner):
                raise NotFoundError(f"session '{session_id}' not found for app '{app}'")
        return session_id

    def history(self, session_id: str, turns: int = HISTORY_TURNS) -> list[dict[str, str]]:
        """The last ``turns`` question/answer pairs as chat messages, oldest first."""
        with self._connect() as con:
            rows = con.execute(
                "SELECT question, answer FROM turns WHERE session_id=? ORDER BY seq DESC LIMIT ?", (session_id, turns)
            ).fetchall()
        messages: list[dict[str, str]] = []
        for question, answer in reversed(rows):
            messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        return messages

    def append(self, session_id: str, question: str, answer: str) -> None:
        now = time.time()
        with self._connect() as con:
            con.execute("INSERT INTO turns(session_id, question, answer, created_at) VALUES (?,?,?,?)",
                        (session_id, question, answer, now))
            con.execute("UPDATE sessions SET updated_at=? WHERE id=?", (now, session_id))
