"""domainrag doctor: check every storage location the workspace uses before real work needs it.

Lists and writes (probe object, deleted again) the workspace lake, and reads every catalogued
dataset and every registered model's manifest, then prints one table row per check with the
failure class and a hint.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from domainrag.cli._context import command_app, ws
from domainrag.storage.options import parse_storage_options, resolve
from domainrag.storage.preflight import CheckResult, preflight

if TYPE_CHECKING:
    from domainrag.workspace import Workspace

app = command_app()


def doctor(
    workspace: Workspace, storage_options: Mapping[str, Any] | None = None, console: Console | None = None
) -> list[CheckResult]:
    """Run the storage checks for a workspace, print them as a table (to ``console``, default
    stdout), and return the results."""
    lake = workspace.settings.lake
    reads = [r["uri"] for r in workspace.catalog.list("dataset") if r.get("uri")]
    # a model with stored weights has a manifest in the lake; a remote or GGUF-file model's uri is its server or file
    reads += [f"{r['uri'].rstrip('/')}/manifest.json" for r in workspace.catalog.list("model")
              if r.get("uri") and r.get("key")]
    results = preflight(reads=reads, writes=[lake], lists=[lake], options=storage_options)
    print_results(results, lake, storage_options, console or Console())
    return results


def print_results(
    results: list[CheckResult], lake: str, storage_options: Mapping[str, Any] | None, console: Console
) -> None:
    """Rich table of results, preceded by the lake's backend and redacted options."""
    try:
        about = resolve(lake, storage_options).describe()
        console.print(f"lake [bold]{lake}[/] via {about['backend']} ({about['endpoint']})"
                      + (f", options {about['options']}" if about["options"] else ""), highlight=False)
    except Exception as exc:  # an invalid lake URL is reported in the table too
        console.print(f"lake [bold]{lake}[/]: {exc}", highlight=False)
    table = Table(title="storage checks")
    for col in ("check", "location", "result", "hint / detail"):
        table.add_column(col, overflow="fold")
    for r in results:
        status = "[green]ok[/]" if r.ok else f"[red]{r.cause}[/]"
        note = r.detail if r.ok else "\n".join(x for x in (r.hint, r.detail) if x)
        table.add_row(r.operation, r.url, status, note)
    console.print(table)
    failed = sum(not r.ok for r in results)
    console.print(f"[red]{failed} of {len(results)} checks failed[/]" if failed
                  else f"[green]all {len(results)} checks passed[/]")


@app.command("doctor")
def doctor_command(
    storage_options: Annotated[
        str | None,
        typer.Option("--storage-options", help='JSON object overriding endpoint/credentials, e.g. '
                     '{"endpoint_url": "http://127.0.0.1:19000"} (default: from the environment)'),
    ] = None,
) -> None:
    """Check that the lake, datasets and models are reachable, readable and (lake) writable."""
    options = parse_storage_options(storage_options)
    results = doctor(ws(), options)
    if not all(r.ok for r in results):
        raise typer.Exit(code=1)
