"""What every command module shares: the consoles, the workspace handle and the output helpers.

Start-up time: commands import the workspace, training, serving, evaluation and model libraries
(torch, transformers) inside their bodies, so that ``domainrag --help`` and light commands start
without loading them. That is the one reason imports in ``domainrag.cli`` are function-local.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import click
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from typer.core import TyperGroup
from typer.exceptions import TyperException

from domainrag.errors import DomainRagError

TRACEBACK_ENV = "DOMAINRAG_TRACEBACK"

if TYPE_CHECKING:
    from domainrag.workspace import Workspace

console = Console()
err_console = Console(stderr=True)


# Exit status of every command, decided here and nowhere else.
EXIT_FAILED = 1  # an operation failed, or a name (app, index, job, model, key) was not found
EXIT_USAGE = 2  # the command line is wrong: click's own usage errors, OptionError, invalid input
EXIT_PARTIAL = 3  # ingest: done, but some files or lines were skipped (each one listed)


class OptionError(DomainRagError):
    """An option's value cannot be used as given (bad JSON, unknown mode, malformed key=value): a usage
    error, exit status 2 like click's own."""


def exit_code(exc: BaseException) -> int:
    """The exit status for an error a command raised (see the EXIT_* constants)."""
    return EXIT_USAGE if isinstance(exc, (OptionError, ValidationError)) else EXIT_FAILED


def report_error(exc: DomainRagError | ValidationError) -> int:
    """Print an error on stderr as ``error: ...`` (plus a hint, or one line per invalid field), never a
    traceback; returns its exit status."""
    if isinstance(exc, ValidationError):
        err_console.print("[bold red]error:[/] invalid input", soft_wrap=True)
        for e in exc.errors():
            where = ".".join(str(p) for p in e["loc"]) or exc.title  # a whole-object check: name the object
            err_console.print(f"  {where}: {e['msg']}", markup=False, soft_wrap=True)
    else:
        err_console.print(f"[bold red]error:[/] {escape(exc.message)}", soft_wrap=True)
        if exc.hint:
            err_console.print(f"[yellow]hint:[/] {escape(exc.hint)}", soft_wrap=True)
    return exit_code(exc)


def traceback_wanted() -> bool:
    """Whether ``DOMAINRAG_TRACEBACK`` asks for Python tracebacks instead of one-line errors (any value but 0)."""
    return os.environ.get(TRACEBACK_ENV, "").strip() not in ("", "0")


class CliGroup(TyperGroup):
    """The root command group: a DomainRagError or pydantic ValidationError raised by any command is printed
    by report_error and becomes its exit status, so the CLI (and typer's CliRunner) never shows a traceback.
    An OSError that no layer turned into a DomainRagError (a file, a disk, a model library's loader) is
    printed as one line too, exit status 1, and so is any other exception (``DOMAINRAG_TRACEBACK=1`` shows its
    traceback instead)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (DomainRagError, ValidationError) as exc:
            raise typer.Exit(report_error(exc)) from exc
        except OSError as exc:
            if traceback_wanted():
                raise
            first = (str(exc).strip().splitlines() or [""])[0]
            raise typer.Exit(report_error(DomainRagError(f"{type(exc).__name__}: {first}"))) from exc
        except (typer.Exit, typer.Abort, TyperException, click.exceptions.Exit, click.exceptions.Abort,
                click.ClickException):
            raise  # exits and usage errors (typer's bundled click and the standalone one)
        except Exception as exc:  # a failure no layer explained: one line and a way to see more, not a traceback
            if traceback_wanted():
                raise
            first = (str(exc).strip().splitlines() or [""])[0]
            raise typer.Exit(report_error(DomainRagError(
                f"unexpected {type(exc).__name__}: {first}",
                hint=f"this is a domainrag bug if the input was valid: set {TRACEBACK_ENV}=1 to see where it "
                     "happened, and report it"))) from exc


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


JsonFlag = Annotated[bool, typer.Option("--json", help="print JSON instead of a table (for scripts)")]
"""The one --json option of every list and show command."""


def local_time(ts: float | None) -> str:
    """A timestamp (seconds since the epoch) as a local date and time, e.g. 2026-12-07 14:05:09."""
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value > 1e9:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(value))
    if isinstance(value, (dict, list)):
        return json.dumps(value)[:80]
    return str(value)


def print_rich(renderable: Any) -> None:
    """Print a table: on a terminal fitted to its width; in a pipe or file at its natural width, so no
    cell (an id above all) is wrapped or cut with an ellipsis."""
    if console.is_terminal:
        console.print(renderable)
    else:
        # console.print never renders wider than the console (80 columns in a pipe), so render the lines
        # at the table's natural width and write them as plain text.
        width = Measurement.get(console, console.options.update_width(10_000), renderable).maximum
        lines = console.render_lines(renderable, console.options.update_width(max(width, 20)), pad=False)
        console.out("\n".join("".join(seg.text for seg in line).rstrip() for line in lines), highlight=False)


def print_table(rows: list[dict[str, Any]], columns: list[str], title: str) -> None:
    """Rows of catalogue records as a table; timestamps as dates, nested values as short JSON. The first
    column (the name or id) never wraps."""
    table = Table(title=title)
    for i, c in enumerate(columns):
        table.add_column(c, no_wrap=i == 0)
    for r in rows:
        table.add_row(*[_cell(r.get(c)) for c in columns])
    print_rich(table)


def print_json(obj: Any) -> None:
    """JSON on stdout: highlighted on a terminal, plain (and never wrapped) otherwise."""
    text = json.dumps(obj, default=str, indent=2, ensure_ascii=False)
    if console.is_terminal:
        console.print_json(text)
    else:
        console.out(text, highlight=False)


def print_rows(rows: list[dict[str, Any]], columns: list[str], title: str, as_json: bool) -> None:
    """A list command's output: the full records as a JSON array with --json, else a table of ``columns``."""
    if as_json:
        print_json(rows)
    else:
        print_table(rows, columns, title)


def print_record(record: Mapping[str, Any], title: str, as_json: bool) -> None:
    """A show command's output: the record as JSON with --json, else one row per field (nested values as JSON,
    timestamps as local dates)."""
    if as_json:
        print_json(record)
        return
    table = Table(title=title, show_header=False)
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    for key, value in record.items():
        shown = json.dumps(value, default=str) if isinstance(value, (dict, list)) else _cell(value)
        table.add_row(key, local_time(value) if key.endswith("_at") and isinstance(value, (int, float)) else shown)
    print_rich(table)


def load_json(text: str, option: str) -> Any:
    """Parse an option's JSON value; a syntax error names the option and the column."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise OptionError(f"{option} is not valid JSON: {exc.msg} (column {exc.colno})") from exc


class Waiting:
    """A spinner with a message while something slow runs that reports no progress of its own (a model
    loading, a job starting). On a terminal a rich status on stdout (text printed through the console
    meanwhile appears above it); elsewhere one line on stderr. ``done()`` ends it early (at the first
    streamed token, say); leaving the ``with`` block ends it too."""

    def __init__(self, message: str) -> None:
        self.message = message
        self._status: Any = None
        self._live = False

    def __enter__(self) -> Waiting:
        self._live = True
        if console.is_terminal:
            self._status = console.status(self.message)
            self._status.start()
        else:
            err_console.print(f"{self.message} ...", markup=False, highlight=False, soft_wrap=True)
        return self

    def update(self, message: str) -> None:
        """Say what is happening now (a new line in a pipe); nothing once done."""
        if self._status is not None:
            self._status.update(message)
        elif self._live:
            err_console.print(f"{message} ...", markup=False, highlight=False, soft_wrap=True)
        self.message = message

    def done(self) -> None:
        self._live = False
        if self._status is not None:
            self._status.stop()
            self._status = None

    def __exit__(self, *exc: object) -> None:
        self.done()


def store_option(text: str) -> Any:
    """A store option: a type name (embedded, opensearch, ...) or a JSON config object, checked here so that a
    bad one is named as ``--store`` before any model loads."""
    value = load_json(text, "--store") if text.strip().startswith("{") else text
    from domainrag.index.config import parse_store_config  # start-up time: only commands with --store pay

    try:
        parse_store_config(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"][1:])  # loc[0] is the store type's tag
        raise OptionError(f"--store: {field + ': ' if field else ''}{first['msg']}",
                          hint='a type (embedded, opensearch, elasticsearch) or JSON, e.g. '
                               '{"type": "opensearch", "hosts": ["http://localhost:9200"]}') from exc
    return value


def progress_bar() -> Progress:
    """A progress bar on stdout that stays on screen when done; when stdout is not a terminal (CI, nohup,
    a pipe), a plain progress line every few seconds instead, so long work is never silent."""
    if not console.is_terminal:
        return LineProgress(console=console)
    return Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=False)


class LineProgress(Progress):
    """rich's Progress without the live display: ``update`` prints ``label: done/total (pct) elapsed`` lines,
    at most one per ``every`` seconds per task, plus one when a task completes."""

    def __init__(self, *, console: Console, every: float = 5.0) -> None:
        super().__init__(console=console, disable=True)
        self._every = every
        self._printed: dict[Any, tuple[float, float | None]] = {}

    def add_task(self, description: str, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """Adds the task and prints its description at once, so the work is announced before its first update."""
        self.console.print(f"{description} ...", highlight=False, markup=False)
        return super().add_task(description, *args, **kwargs)

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


def labelled_progress(start: str = "loading models and data") -> tuple[Progress, Callable[[str, int, int], None]]:
    """A transient bar on stderr and ``update(label, done, total)`` that adds one task per label. Until the
    first update a spinner task ``start`` runs (on a terminal), so the wait for models is not silent."""
    if not err_console.is_terminal:
        line = LineProgress(console=err_console)
        tasks: dict[str, Any] = {}

        def update_lines(label: str, done: int, total: int) -> None:
            if label not in tasks:
                tasks[label] = line.add_task(label, total=total)
            line.update(tasks[label], completed=done, total=total)

        err_console.print(f"{start} ...", markup=False, highlight=False)
        return line, update_lines
    bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), console=err_console, transient=True)
    tasks = {"": bar.add_task(start, total=None)}

    def update(label: str, done: int, total: int) -> None:
        if "" in tasks:  # the work has started: the start spinner goes
            bar.remove_task(tasks.pop(""))
        if label not in tasks:
            tasks[label] = bar.add_task(label, total=total)
        bar.update(tasks[label], completed=done, total=total)

    return bar, update
