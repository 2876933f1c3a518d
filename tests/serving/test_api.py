"""The app factory: open endpoints, the OpenAPI document, the playground (also in a real browser)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from domainrag.serving.api import create_api

pytestmark = pytest.mark.integration


def test_healthz_playground_and_docs(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "domainrag playground" in page.text and "/v1/apps" in page.text and "getReader" in page.text
    assert "http://" not in page.text.replace("http://www.w3.org", "")  # no CDN
    spec = client.get("/openapi.json").json()
    assert {"/v1/chat/completions", "/v1/apps/{app}/completion", "/v1/models"} <= set(spec["paths"])


def test_playground_in_headless_chromium(served_ws, serve_api, chromium) -> None:
    """Pick an app, ask, watch the streamed answer and open its sources (Debian chromium + Selenium)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    with serve_api(create_api(served_ws, require_keys=False)) as url:
        driver = chromium()
        try:
            wait = WebDriverWait(driver, 60)
            driver.get(f"{url}/")
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#app option"))
            names = {o.get_attribute("value") for o in driver.find_elements(By.CSS_SELECTOR, "#app option")}
            assert {"docs", "strict", "hr"} <= names
            Select(driver.find_element(By.ID, "app")).select_by_value("docs")
            driver.find_element(By.ID, "query").send_keys("How long is the CTL-400 warranty?")
            driver.find_element(By.ID, "send").click()
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".msg.assistant .sources summary"))
            answer = driver.find_elements(By.CSS_SELECTOR, ".msg.assistant")[-1]
            assert answer.text.strip()
            answer.find_element(By.CSS_SELECTOR, ".sources summary").click()
            meta = answer.find_elements(By.CSS_SELECTOR, ".source .meta")
            assert meta and "score" in meta[0].text and ".md" in meta[0].text
        finally:
            driver.quit()
