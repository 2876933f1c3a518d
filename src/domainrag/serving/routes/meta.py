"""Open endpoints: the liveness probe and the playground page (never need a key)."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter()


@router.get("/healthz", tags=["meta"])
def healthz() -> dict[str, str]:
    """Liveness probe; never needs a key."""
    return {"status": "ok"}


@router.get("/", include_in_schema=False)
def playground() -> HTMLResponse:
    page = resources.files("domainrag.serving").joinpath("static/playground.html").read_text(encoding="utf-8")
    return HTMLResponse(page)
