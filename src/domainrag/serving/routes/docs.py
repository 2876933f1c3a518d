"""OpenAPI documentation pages that work offline: ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc).

FastAPI's default pages load their scripts and styles from a CDN, so they are blank on a machine without
internet access. These are FastAPI's own page builders (its self-hosted docs recipe) pointed at the Swagger
UI and ReDoc files shipped in the ``fastapi-offline`` package, served from ``/docs-assets``; the Swagger UI
validator badge (which calls an online service) is off. The document itself drops FastAPI's automatic 422
answers: a request that fails validation gets 400 in OpenAI's envelope (:mod:`domainrag.serving.http_errors`),
which each route documents.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_URL = "/docs-assets"
_ASSETS = resources.files("fastapi_offline").joinpath("static")


def _without_422(api: FastAPI) -> None:
    """FastAPI documents a 422 for every route with a body or parameters and has no switch to turn that off."""
    build = api.openapi

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            schema = build()  # FastAPI caches it in api.openapi_schema: edited in place once
            for operations in schema.get("paths", {}).values():
                for operation in operations.values():
                    operation.get("responses", {}).pop("422", None)
            for unused in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(unused, None)
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]


def install_docs(api: FastAPI, docs_url: str = "/docs", redoc_url: str = "/redoc") -> None:
    """Serve the documentation pages and their assets from this server (``api`` made with ``docs_url=None``)."""
    _without_422(api)
    api.mount(ASSETS_URL, StaticFiles(directory=str(_ASSETS)), name="docs-assets")
    openapi_url = api.openapi_url or "/openapi.json"
    oauth2_redirect_url = f"{docs_url}/oauth2-redirect"

    @api.get(docs_url, include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=root + openapi_url, title=f"{api.title} - Swagger UI",
            oauth2_redirect_url=root + oauth2_redirect_url,
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            swagger_ui_parameters={"validatorUrl": None},
        )

    @api.get(oauth2_redirect_url, include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @api.get(redoc_url, include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=root + openapi_url, title=f"{api.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png", with_google_fonts=False,
        )
