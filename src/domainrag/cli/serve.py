"""domainrag serve: the HTTP API."""

from __future__ import annotations

import errno
import os
import socket
from typing import Annotated, Any

import typer

from domainrag.cli._context import command_app, ws
from domainrag.errors import DomainRagError

app = command_app()

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


def log_config(access: str) -> dict[str, Any]:
    """uvicorn's logging, with the request id on every line of a request; access lines from our middleware
    (with request id, key id, duration and tokens) replace uvicorn's own."""
    filters = {"request_id": {"()": "domainrag.serving.tracing.RequestIdFilter"}}
    access_format = "%(message)s" if access == "json" else "%(asctime)s [%(request_id)s] %(message)s"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": filters,
        "formatters": {"default": {"format": LOG_FORMAT}, "access": {"format": access_format}},
        "handlers": {
            "default": {"class": "logging.StreamHandler", "formatter": "default", "filters": ["request_id"],
                        "stream": "ext://sys.stderr"},
            "access": {"class": "logging.StreamHandler", "formatter": "access", "filters": ["request_id"],
                       "stream": "ext://sys.stdout"},
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
            "domainrag": {"handlers": ["default"], "level": "INFO", "propagate": False},
            "domainrag.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
        },
    }


_HOSTS = "e.g. 127.0.0.1 or 0.0.0.0"


def _check_port(host: str, port: int) -> None:
    """Fail with the address named before the app loads, binding every address ``host`` resolves to, as uvicorn
    will; uvicorn itself would exit 3, the status ingest uses for skipped files."""
    try:
        addresses = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise DomainRagError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                             hint=f"--host must be a name or address of this machine, {_HOSTS}") from exc
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            try:
                sock.bind(address)
            except OSError as exc:
                hint = {errno.EADDRINUSE: "choose another --port, or stop the server that holds it",
                        errno.EACCES: "ports below 1024 need privileges: choose a --port above 1023",
                        errno.EADDRNOTAVAIL: f"--host must be an address of this machine, {_HOSTS}",
                        }.get(exc.errno, "check --host and --port")
                raise DomainRagError(f"cannot listen on {host}:{port}: {exc.strerror or exc}", hint=hint) from exc


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="address to listen on (0.0.0.0: every interface)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port (0: one the system picks)")] = 8000,
    access_log: Annotated[str | None, typer.Option(
        help="one line per request on stdout: text, json or off (default: $DOMAINRAG_ACCESS_LOG, else text)")] = None,
    key_rpm: Annotated[int | None, typer.Option(
        min=0, help="requests per minute of a key without its own limit (0: none; default $DOMAINRAG_KEY_RPM)")] = None,
    key_max_streams: Annotated[int | None, typer.Option(
        min=0, help="generations at once of a key without its own limit (0: none; default "
        "$DOMAINRAG_KEY_MAX_STREAMS)")] = None,
) -> None:
    """Run the HTTP API (FastAPI; OpenAPI docs at /docs, Prometheus metrics at /metrics)."""
    import uvicorn

    from domainrag.serving.api import create_api
    from domainrag.serving.tracing import access_log_mode

    mode = access_log_mode(access_log if access_log is not None else os.environ.get("DOMAINRAG_ACCESS_LOG") or "text")
    _check_port(host, port)
    api = create_api(ws(), key_rpm=key_rpm, key_max_streams=key_max_streams, access_log=mode)
    uvicorn.run(api, host=host, port=port, log_level="info", log_config=log_config(mode), access_log=False)
