"""API keys, sessions and follow-up condensation, without models; the ``key`` CLI group."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from domainrag.errors import DomainRagError, NotFoundError
from domainrag.serving.keys import create_key, keys_exist, list_keys, revoke_key, verify_key
from domainrag.serving.sessions import SessionStore, condense_query, needs_context


def _app(ws, name: str = "docs") -> None:
    """A catalogue app record (keys only check that the app exists)."""
    ws.catalog.create("app", name, {"model": "m", "retrieval": {"index": "kb"}})


def test_key_lifecycle(ws) -> None:
    _app(ws)
    assert not keys_exist(ws)
    token, record = create_key(ws, "docs", note="ci")
    assert token.startswith("dr-") and record["name"].startswith("key_") and token not in str(record)
    key = verify_key(ws, token)
    assert key is not None and key.app == "docs" and key.allows_app("docs") and not key.allows_app("hr")
    assert not key.allows_models
    assert verify_key(ws, "dr-nope") is None and verify_key(ws, "sk-" + token[3:]) is None
    revoke_key(ws, record["name"])
    assert verify_key(ws, token) is None and keys_exist(ws)  # revoked keys still make keys required
    assert list_keys(ws)[0]["revoked_at"] and "sha256" not in list_keys(ws)[0]
    with pytest.raises(NotFoundError):
        revoke_key(ws, "key_missing")
    with pytest.raises(NotFoundError):
        create_key(ws, "no-such-app")
    star, _ = create_key(ws, "*")
    assert verify_key(ws, star).allows_models and verify_key(ws, star).allows_app("anything")


@pytest.mark.parametrize(("question", "expected"), [
    ("How often is its diaphragm replaced?", "What does the DP-220 pump deliver? How often is its diaphragm replaced?"),
    ("And the warranty?", "What does the DP-220 pump deliver? And the warranty?"),
    ("What is the warranty period of the CTL-400?", "What is the warranty period of the CTL-400?"),
])
def test_condense_prepends_the_last_self_contained_question(question: str, expected: str) -> None:
    history = [{"role": "user", "content": "What does the DP-220 pump deliver?"},
               {"role": "assistant", "content": "12 litres per hour [1]."},
               {"role": "user", "content": "What about its pressure?"},  # a follow-up never becomes the anchor
               {"role": "assistant", "content": "10 bar [1]."}]
    assert condense_query(question, history) == expected
    assert condense_query(question, []) == question


def test_needs_context() -> None:
    assert needs_context("and them?") and needs_context("What does it cost?")
    assert not needs_context("Which pump delivers twelve litres per hour at ten bar?")


def test_session_store(tmp_path) -> None:
    store = SessionStore(tmp_path / "sessions.db")
    sid = store.open(None, "docs", "key_a")
    assert store.history(sid) == []
    for i in range(5):
        store.append(sid, f"q{i}", f"a{i}")
    history = store.history(sid, turns=2)
    assert history == [{"role": "user", "content": "q3"}, {"role": "assistant", "content": "a3"},
                       {"role": "user", "content": "q4"}, {"role": "assistant", "content": "a4"}]
    assert store.open(sid, "docs", "key_a") == sid
    with pytest.raises(NotFoundError):
        store.open(sid, "hr", "key_a")  # another app
    with pytest.raises(NotFoundError):
        store.open(sid, "docs", "key_b")  # another key
    assert store.open("client-chosen-id", "docs") == "client-chosen-id"
    with pytest.raises(DomainRagError):
        store.open("x", "docs")


def test_key_cli(ws, cli_for) -> None:
    _app(ws)
    cli = cli_for(ws)
    runner = CliRunner()

    created = runner.invoke(cli, ["key", "create", "--app", "docs", "--note", "ci"])
    assert created.exit_code == 0, created.output
    token = next(w for w in created.output.split() if w.startswith("dr-"))
    assert verify_key(ws, token).app == "docs"
    listed = runner.invoke(cli, ["key", "list"])
    assert listed.exit_code == 0 and "docs" in listed.output and token not in listed.output
    kid = list_keys(ws)[0]["name"]
    assert runner.invoke(cli, ["key", "revoke", kid]).exit_code == 0
    assert verify_key(ws, token) is None
    assert runner.invoke(cli, ["key", "create", "--app", "nope"]).exit_code != 0
