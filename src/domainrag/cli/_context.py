"""What every command module shares: the consoles, the workspace handle and the output helpers.

Start-up time: commands import the workspace, training, serving, evaluation and model libraries
(torch, transformers) inside their bodies, so that ``domainrag --help`` and light commands start
without loading them. That is the one reason imports in ``domainrag.cli`` are function-local.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from domainrag.errors import DomainRagError

if TYPE_CHECKING:
    from domainrag.workspace import Workspace

console = Console()
err_console = Console(stderr=True)


def command_app(name: str | None = None, help: str | None = None) -> typer.Typer:
    """The Typer each command module defines as ``app``: named, it is a command group; unnamed, its
    commands join the top level. Help is plain text (no markup, so [brackets] in help stay)."""
    return typer.Typer(name=name, help=help, no_args_is_help=name is not None, rich_markup_mode=None)


class WorkspaceHandle:
    """The workspace the commands act on: opened on first use from ``--workspace`` (or the default)."""

    def __init__(self) -> None:
        self.path: Path | None = None
        self._ws: Workspace | None = None

    def configure(self, path: Path | None) -> None:
        """Set the folder (None: $DOMAINRAG_HOME or ./.domainrag); a different folder drops the open workspace."""
        if path != self.path:
            self.path, self._ws = path, None

    def use(self, ws: Workspace) -> None:
        """Act on an already opened workspace (tests, embedding the CLI)."""
        self._ws = ws

    def reset(self) -> None:
        self.path, self._ws = None, None

    def get(self) -> Workspace:
        if self._ws is None:
            from domainrag.workspace import Workspace  # start-up time, see the module docstring

            self._ws = Workspace.open(self.path)
        return self._ws


workspace = WorkspaceHandle()


def ws() -> Workspace:
    """The CLI's workspace (opened on first use)."""
    return workspace.get()


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value > 1e9:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(value))
    if isinstance(value, (dict, list)):
        return json.dumps(value)[:80]
    return str(value)


def print_table(rows: list[dict[str, Any]], columns: list[str], title: str) -> None:
    """Rows of catalogue records as a table; timestamps as dates, nested values as short JSON."""
    table = Table(title=title)
    for c in columns:
        table.add_column(c)
    for r in rows:
        table.add_row(*[_cell(r.get(c)) for c in columns])
    console.print(table)


def print_json(obj: Any) -> None:
    console.print_json(json.dumps(obj, default=str))


def load_json(text: str, option: str) -> Any:
    """Parse an option's JSON value; a syntax error names the option and the column."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DomainRagError(f"{option} is not valid JSON: {exc.msg} at column {exc.colno}") from exc


def store_option(text: str) -> Any:
    """A store option: a type name (embedded, opensearch, ...) or a JSON config object."""
    return load_json(text, "--store") if text.strip().startswith("{") else text


def progress_bar() -> Progress:
    """A progress bar on stdout that stays on screen when done; when stdout is not a terminal (CI, nohup,
    a pipe), a plain progress line every few seconds instead, so long work is never silent."""
    if not console.is_terminal:
        return LineProgress(console=console)
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=False)


class LineProgress(Progress):
    """rich's Progress without the live display: ``update`` prints ``label: done/total (pct) elapsed`` lines,
    at most one per ``every`` seconds per task, plus one when a task completes."""

    def __init__(self, *, console: Console, every: float = 5.0) -> None:
        super().__init__(console=console, disable=True)
        self._every = every
        self._printed: dict[Any, tuple[float, float | None]] = {}

    def update(self, task_id: Any, **fields: Any) -> None:  # type: ignore[override]
        super().update(task_id, **fields)
        task = self._tasks[task_id]
        now = time.monotonic()
        last, last_done = self._printed.get(task_id, (0.0, None))
        finished = task.total is not None and task.completed >= task.total
        if task.completed != last_done and (now - last >= self._every or finished):
            total = f"/{task.total:.0f} ({task.completed / task.total:.0%})" if task.total else ""
            self.console.print(f"{task.description}: {task.completed:.0f}{total} after {task.elapsed or 0:.0f} s",
                               highlight=False, markup=False)
            self._printed[task_id] = (now, task.completed)


def labelled_progress() -> tuple[Progress, Callable[[str, int, int], None]]:
    """A transient bar on stderr and ``update(label, done, total)`` that adds one task per label."""
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=err_console, transient=True)
    tasks: dict[str, Any] = {}

    def update(label: str, done: int, total: int) -> None:
        if label not in tasks:
            tasks[label] = bar.add_task(label, total=total)
        bar.update(tasks[label], completed=done, total=total)

    return bar, update
