"""domainrag dataset: raw data in the lake."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from domainrag.cli._context import JsonFlag, OptionError, command_app, console, print_rows, ws

app = command_app("dataset", "Datasets in the data lake.")


@app.command("upload")
def dataset_upload(
    source: Annotated[str, typer.Argument(help="local file or folder to upload")],
    name: Annotated[str, typer.Option(help="dataset name (raw/<name>/ in the lake)")],
) -> None:
    """Upload a local file or folder to raw/<name>/ in the data lake."""
    if "://" in source:
        raise OptionError(f"{source} is a URL; dataset upload copies a local file or folder",
                          hint="jobs and ingest read s3:// and other lake URLs directly: pass the URL to them")
    url, n_files = ws().upload_dataset(Path(source), name)
    console.print(f"uploaded {n_files} file(s) to {url}")


@app.command("list")
def dataset_list(as_json: JsonFlag = False) -> None:
    """Datasets uploaded to the lake."""
    print_rows(ws().catalog.list("dataset"), ["name", "uri", "files", "created_at"], "datasets", as_json)
