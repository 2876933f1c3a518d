"""Open endpoints: the liveness probe, the playground page and its icon (never need a key)."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

router = APIRouter()
_STATIC = resources.files("domainrag.serving").joinpath("static")


@router.get("/healthz", tags=["meta"])
def healthz() -> dict[str, str]:
    """Liveness probe; never needs a key."""
    return {"status": "ok"}


@router.get("/", include_in_schema=False)
def playground() -> HTMLResponse:
    return HTMLResponse(_STATIC.joinpath("playground.html").read_text(encoding="utf-8"))


@router.get("/favicon.svg", include_in_schema=False)
@router.get("/favicon.ico", include_in_schema=False)  # browsers ask for this one when a page names no icon
def favicon() -> Response:
    return Response(_STATIC.joinpath("favicon.svg").read_bytes(), media_type="image/svg+xml",
                    headers={"Cache-Control": "public, max-age=86400"})
