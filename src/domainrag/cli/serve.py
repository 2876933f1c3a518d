"""domainrag serve: the HTTP API."""

from __future__ import annotations

from typing import Annotated

import typer

from domainrag.cli._context import command_app, ws

app = command_app()


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="address to listen on (0.0.0.0: every interface)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
) -> None:
    """Run the HTTP API (FastAPI; OpenAPI docs at /docs)."""
    import uvicorn

    from domainrag.serving.api import create_api

    uvicorn.run(create_api(ws()), host=host, port=port, log_level="info")
