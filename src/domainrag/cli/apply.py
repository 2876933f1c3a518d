"""domainrag apply -f app.yaml: make the workspace match a declarative file of indexes and apps.

Idempotent: an index or app that already matches is left alone ("unchanged"), a missing one is created,
an app that differs is replaced ("updated"), and an index's source folder is re-ingested (only new or
edited chunks are written). Everything that can be checked without loading a model is checked first,
for the whole file, so a bad field stops the run before anything changes. The schema is
domainrag.workspace_config.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError
from rich.table import Table

from domainrag.cli._context import command_app, console, progress_bar, ws

if TYPE_CHECKING:
    from domainrag.workspace import Workspace
    from domainrag.workspace_config import Located, WorkspaceConfig

app = command_app()


@dataclass
class Change:
    kind: str  # index | app
    name: str
    result: str  # created | updated | unchanged (with --dry-run: would be ...)
    detail: str = ""


def _source(decl_source: str, base: Path) -> str:
    """A local source (a path, or a file:// / local:// URL) as a path, relative ones taken from the YAML file's
    folder; other URLs stay as they are."""
    from domainrag.storage.lake import split_scheme

    if split_scheme(decl_source) not in ("file", "local"):
        return decl_source
    path = Path(decl_source.removeprefix("file://").removeprefix("local://")).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def _check_local_source(source: str | None, located: Located, name: str) -> None:
    """A local source folder must exist before anything is created (a remote one is read when ingesting)."""
    from domainrag.errors import DomainRagError
    from domainrag.storage.lake import split_scheme

    if not source:
        return
    try:
        if split_scheme(source) not in ("file", "local"):
            return
    except DomainRagError as exc:  # an unsupported scheme
        raise located.error(("indexes", name, "source"), exc.message, exc.hint) from exc
    path = Path(_source(source, located.path.parent))
    if not path.exists():
        raise located.error(("indexes", name, "source"), f"source {path} does not exist",
                            hint="a relative source is read from the YAML file's folder")


def plan(workspace: Workspace, config: WorkspaceConfig, located: Located) -> tuple[list[Change], dict[str, Any]]:
    """What applying would do, and the validated app specs; raises (naming the line) before any change."""
    from domainrag.errors import DomainRagError
    from domainrag.index import parse_store_config
    from domainrag.serving.apps import AppSpec, get_app

    changes: list[Change] = []
    store_types: dict[str, str] = {}
    for name, decl in config.indexes.items():
        store_types[name] = decl.store.type
        _check_local_source(decl.source, located, name)
        record = workspace.catalog.get("index", name)
        if record is None:
            changes.append(Change("index", name, "created"))
            continue
        if record["embedding_model"] != decl.embedding_model:
            raise located.error(("indexes", name, "embedding_model"),
                                f"index '{name}' exists with embedding model '{record['embedding_model']}'; an index "
                                "cannot change its model in place",
                                hint=f"`domainrag index delete {name}` first, or declare a new index name")
        if parse_store_config(record.get("store")).model_dump() != decl.store.model_dump():
            raise located.error(("indexes", name, "store"), f"index '{name}' exists with another store config",
                                hint=f"`domainrag index delete {name}` first, or declare a new index name")
        changes.append(Change("index", name, "unchanged"))
    specs: dict[str, Any] = {}
    for name, decl in config.apps.items():
        index = decl.retrieval.index
        catalogued = workspace.catalog.get("index", index)
        if index not in store_types and catalogued is None:
            raise located.error(("apps", name, "retrieval", "index"),
                                f"index '{index}' is neither declared under 'indexes' nor catalogued")
        retrieval = decl.retrieval.model_dump(exclude_unset=True)
        retrieval.setdefault("vector_store", store_types.get(index) or parse_store_config(catalogued["store"]).type)
        try:
            spec = AppSpec.model_validate({"name": name, "model": decl.model, "retrieval": retrieval,
                                           "generation": decl.generation})
        except ValidationError as exc:
            raise located.from_validation(exc, ("apps", name)) from exc
        try:
            workspace.resolve_llm(spec.model)  # unknown names fail now, before anything is created
        except DomainRagError as exc:
            raise located.error(("apps", name, "model"), exc.message, exc.hint) from exc
        existing = get_app(workspace, name)
        result = "created"
        if existing is not None:
            stored = AppSpec.model_validate(existing.model_dump(include=set(AppSpec.model_fields)))
            result = "unchanged" if stored == spec else "updated"
        changes.append(Change("app", name, result))
        specs[name] = spec
    return changes, specs


def apply_config(workspace: Workspace, config: WorkspaceConfig, located: Located, *,
                 dry_run: bool = False) -> list[Change]:
    """Create, update or leave each declared index and app; returns what happened to each."""
    from domainrag.errors import DomainRagError
    from domainrag.serving.apps import create_app
    from domainrag.workspace import create_index, ingest

    changes, specs = plan(workspace, config, located)
    if dry_run:
        return [Change(c.kind, c.name, f"would be {c.result}", c.detail) for c in changes]
    base = located.path.parent
    for change in changes:
        where: tuple[str, ...] = ("indexes" if change.kind == "index" else "apps", change.name)
        try:
            if change.kind == "index":
                decl = config.indexes[change.name]
                if change.result == "created":
                    with console.status(f"index {change.name}: loading {decl.embedding_model}"):
                        create_index(workspace, change.name, decl.embedding_model, decl.store)
                if decl.source:
                    _ingest(workspace, change, _source(decl.source, base), ingest)
            elif change.result != "unchanged":
                with console.status(f"app {change.name}: checking its model and index"):
                    create_app(workspace, specs[change.name], replace=change.result == "updated")
        except DomainRagError as exc:
            raise located.error(where, exc.message, exc.hint) from exc
    return changes


def _ingest(workspace: Workspace, change: Change, source: str, ingest: Any) -> None:
    with progress_bar() as bar:
        task = bar.add_task(f"ingest → {change.name}", total=None)
        report = ingest(workspace, change.name, [source], progress=lambda d, t: bar.update(task, completed=d, total=t))
    change.detail = (f"{report.documents} documents, {report.written} chunks written, "
                     f"{report.skipped_existing} already present, {report.deleted_stale} stale removed")
    if change.result == "unchanged" and (report.written or report.deleted_stale):
        change.result = "updated"


@app.command("apply")
def apply_command(
    file: Annotated[Path, typer.Option("--file", "-f", help="YAML file declaring indexes and apps "
                                       "(see docs/configuration.md)")],
    dry_run: Annotated[bool, typer.Option(help="only say what would be created, updated or left unchanged")] = False,
) -> None:
    """Create or update the indexes and apps a YAML file declares; what already matches is left unchanged."""
    from domainrag.workspace_config import load_workspace_config

    config, located = load_workspace_config(file)
    changes = apply_config(ws(), config, located, dry_run=dry_run)
    table = Table(title=f"apply {file}")
    for column in ("kind", "name", "result", "detail"):
        table.add_column(column, overflow="fold")
    for c in changes:
        table.add_row(c.kind, c.name, c.result, c.detail or "-")
    console.print(table)
    counts = {r: sum(c.result.endswith(r) for c in changes) for r in ("created", "updated", "unchanged")}
    console.print(", ".join(f"{n} {r}" for r, n in counts.items()), highlight=False)
