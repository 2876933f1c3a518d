"""Never silent: spinners while models load and jobs start, progress announced before its first update."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from rich.console import Console

from domainrag.cli import _context
from domainrag.cli.app import print_answer
from domainrag.serving.rag import RagEvent


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> Console:
    console = Console(force_terminal=True, record=True, width=120)
    monkeypatch.setattr(_context, "console", console)
    monkeypatch.setattr("domainrag.cli.app.console", console)
    return console


class _Rag:
    """Yields two tokens and the references, recording whether the spinner was running at each step."""

    def __init__(self, wait: _context.Waiting) -> None:
        self.wait = wait
        self.spinning: list[bool] = []

    def stream(self, query: str, top_k: int | None = None) -> Iterator[RagEvent]:
        for text in ("The answer", " is 36 months [1]."):
            self.spinning.append(self.wait._status is not None)
            yield RagEvent("token", text=text)
        self.spinning.append(self.wait._status is not None)
        yield RagEvent("references", references=[{"citation": 1, "document": "w.md", "chunk_id": "w.md::0",
                                                  "score": 0.5}])


def test_streaming_spinner_runs_until_the_first_token(terminal: Console) -> None:
    with _context.Waiting("loading app A") as wait:
        assert wait._status is not None and terminal._live_stack  # a live spinner while the app loads
        rag = _Rag(wait)
        print_answer(rag, "how long?", stream=True, wait=wait)
    assert rag.spinning == [True, False, False]  # generating until the first token, then the tokens alone
    assert not terminal._live_stack
    text = terminal.export_text()
    assert "The answer is 36 months [1]." in text and "w.md::0" in text


def test_whole_answer_spinner_runs_until_the_answer_is_complete(terminal: Console) -> None:
    with _context.Waiting("loading app A") as wait:
        rag = _Rag(wait)
        print_answer(rag, "how long?", stream=False, wait=wait)
    assert rag.spinning == [True, True, True]


def test_waiting_prints_a_line_at_once_when_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    out, err = Console(record=True, width=80), Console(record=True, width=80)
    monkeypatch.setattr(_context, "console", out)
    monkeypatch.setattr(_context, "err_console", err)
    with _context.Waiting("loading embedding model m") as wait:
        assert err.export_text(clear=False) == "loading embedding model m ...\n"  # before the slow work
        wait.update("embedding")
    wait.update("after the end")  # nothing once done
    assert err.export_text() == "loading embedding model m ...\nembedding ...\n" and out.export_text() == ""


def test_line_progress_announces_a_task_before_its_first_update() -> None:
    console = Console(record=True, width=200)
    bar = _context.LineProgress(console=console, every=3600)
    task = bar.add_task("ingest → kb: loading the embedding model", total=None)
    assert console.export_text(clear=False) == "ingest → kb: loading the embedding model ...\n"
    bar.update(task, completed=0, total=4, description="ingest → kb: embedding chunks")
    bar.update(task, completed=2, total=4)  # within `every`: not printed
    bar.update(task, completed=4, total=4)  # the end always is
    lines = console.export_text().splitlines()
    assert lines[1].startswith("ingest → kb: embedding chunks: 0/4 (0%)") and lines[2].startswith(
        "ingest → kb: embedding chunks: 4/4 (100%)") and len(lines) == 3


def test_labelled_progress_spins_until_the_first_label(monkeypatch: pytest.MonkeyPatch) -> None:
    err = Console(force_terminal=True, width=120)
    monkeypatch.setattr(_context, "err_console", err)
    bar, update = _context.labelled_progress("loading models")
    assert [t.description for t in bar.tasks] == ["loading models"]
    update("dense: queries", 1, 10)
    assert [t.description for t in bar.tasks] == ["dense: queries"]
