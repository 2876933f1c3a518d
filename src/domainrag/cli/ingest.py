"""domainrag ingest: load, chunk, embed and bulk-write documents into an index (POST /_bulk)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from domainrag.cli._context import EXIT_PARTIAL, command_app, console, err_console, progress_bar, ws

app = command_app()


@app.command("ingest")
def ingest_cmd(
    paths: Annotated[list[str], typer.Argument(help="files, folders or s3:// / oss:// URLs (text, "
                                                           "Markdown, HTML, JSONL, PDF, Office, CSV, images)")],
    index: Annotated[str, typer.Option(help="target index")],
    batch_size: Annotated[int, typer.Option(min=1, help="chunks per embedding batch (the progress bar moves per "
                                                         "batch)")] = 64,
    max_words: Annotated[int, typer.Option(min=1, help="chunk size in words")] = 120,
    overlap_words: Annotated[int, typer.Option(min=0, help="overlap between chunks in words")] = 20,
    reembed: Annotated[bool, typer.Option(help="rebuild the index from PATHS with its embedding model as it is "
                                               "now (after the model changed)")] = False,
    strict: Annotated[bool, typer.Option(help="any skipped file or line is an error, and nothing is written")] = False,
    contextual_header: Annotated[bool, typer.Option(help="put the document title and section path in front of "
                                                         "each chunk's embedded and searched text")] = True,
) -> None:
    """Load, chunk, embed and bulk-write documents (POST /_bulk). Re-running resumes.

    Exit status: 0 all files ingested, 3 some files or lines were skipped (each one listed), 1 an error,
    2 a usage error.
    """
    from domainrag.workspace import ingest

    with progress_bar() as bar:
        parse_tasks: dict[str, Any] = {}

        def parsed(label: str, done: int, total: int) -> None:  # files parsed, and the pages of a long file
            if label not in parse_tasks:
                parse_tasks[label] = bar.add_task(label, total=total)
            bar.update(parse_tasks[label], completed=done, total=total)

        # Until the first batch: the bar's spinner and this description (the model loads, files are read).
        task = bar.add_task(f"ingest → {index}: loading the embedding model and reading files", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, description=f"ingest → {index}: embedding chunks")

        report = ingest(ws(), index, paths, batch_size=batch_size, max_words=max_words, overlap_words=overlap_words,
                        progress=progress, reembed=reembed, strict=strict, parse_progress=parsed,
                        contextual_header=contextual_header)
    for origin, status in report.files.items():
        if status != "ingested":
            err_console.print(f"[yellow]{status}:[/] {origin}", highlight=False)
    for e in report.errors:
        err_console.print(f"  {e}", highlight=False)
    counts = report.file_counts()
    console.print(f"{len(report.files)} files: {counts['ingested']} ingested, {counts['warned']} ingested with "
                  f"warnings, {counts['skipped']} skipped")
    console.print(
        f"{report.documents} documents → {report.chunks} chunks: {report.written} written, "
        f"{report.skipped_existing} already present, {report.deleted_stale} stale removed, "
        f"{len(report.errors)} errors"
    )
    if report.errors:
        raise typer.Exit(EXIT_PARTIAL)
