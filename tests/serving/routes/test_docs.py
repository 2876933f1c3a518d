"""Offline API docs: /docs and /redoc load only this server's own assets, and render in Chromium with no network."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from domainrag.serving.api import create_api

pytestmark = pytest.mark.integration

# ReDoc's sidebar "powered by" logo: ReDoc has no option to drop it, and hides it itself when it cannot load.
REDOCLY_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"
PAGES = {"/docs": ("swagger-ui-bundle.js", "swagger-ui.css"), "/redoc": ("redoc.standalone.js",)}


def test_docs_pages_reference_only_local_assets(client: TestClient) -> None:
    for page, assets in PAGES.items():
        resp = client.get(page)
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
        assert "http://" not in resp.text and "https://" not in resp.text, page  # no CDN, no web fonts
        links = re.findall(r'(?:src|href)="([^"]+)"', resp.text)
        assert {link.rsplit("/", 1)[-1] for link in links} >= set(assets), links
        for link in links:
            assert link.startswith("/") and not link.startswith("//"), link
            asset = client.get(link)
            assert asset.status_code == 200 and len(asset.content) > 1000, link
        assert "'/openapi.json'" in resp.text or '"/openapi.json"' in resp.text
    assert client.get("/docs-assets/swagger-ui-bundle.js").headers["content-type"].startswith(
        ("application/javascript", "text/javascript"))
    assert client.get("/docs/oauth2-redirect").status_code == 200



def test_docs_render_in_chromium_without_network(served_ws, serve_api, chromium) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with serve_api(create_api(served_ws, require_keys=False)) as url:
        driver = chromium(offline=True)
        try:
            wait = WebDriverWait(driver, 60)
            driver.get(f"{url}/docs")
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#swagger-ui .opblock"))
            root = driver.find_element(By.ID, "swagger-ui")
            assert "/v1/chat/completions" in root.text and "domainrag" in root.text
            loaded = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
            assert loaded and all(u.startswith(url) for u in loaded), loaded  # only this server's own files

            driver.get(f"{url}/redoc")
            wait.until(lambda d: "/v1/chat/completions" in d.find_element(By.TAG_NAME, "body").text)
            loaded = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
            assert all(u.startswith(url) or u == REDOCLY_LOGO for u in loaded), loaded
            assert not driver.find_elements(By.CSS_SELECTOR, "img[alt='redocly logo']")  # failed offline: hidden
        finally:
            driver.quit()
