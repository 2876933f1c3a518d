"""The playground in headless Chromium: the lasting 401 hint, every passage given with the cited ones marked,
a cited passage opened in full, the "cut at the token limit" marker, and the favicon served by the package."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from domainrag.serving.api import create_api

pytestmark = pytest.mark.integration

LLM = "smollm2-135m-instruct"
QUESTION = "How often is the DP-220 diaphragm replaced?"
LONG_DOCS = {  # each one chunk, well over the page's 250-character excerpt
    "pump.md": "# DP-220 dosing pump\n\n" + " ".join([
        "The DP-220 dosing pump delivers up to 12 litres per hour at 10 bar.",
        "Its diaphragm should be replaced every 4000 operating hours, or sooner when the flow drops.",
        "Before replacing it, flush the pump head with clean water and release the line pressure.",
        "The replacement kit contains the diaphragm, two valve balls and the head gasket."]),
    "tower.md": "# Cooling tower\n\n" + " ".join([
        "Quarterly maintenance of the cooling tower covers the conductivity probe and the strainer.",
        "The strainer basket is lifted out, rinsed and checked for cracks before it goes back.",
        "The conductivity probe is wiped with a soft cloth and calibrated against the reference solution.",
        "Record each visit in the maintenance log with the date and the readings taken."]),
}


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory):
    """A workspace whose app ``manual`` answers in at most 4 tokens, with keys required; its `*` key."""
    from domainrag.retrieval.retriever import RetrievalConfig
    from domainrag.serving.apps import AppSpec, create_app
    from domainrag.serving.keys import create_key
    from domainrag.serving.rag import GenerationSettings
    from domainrag.workspace import Workspace, create_index, ingest

    root = tmp_path_factory.mktemp("playground")
    folder = root / "docs"
    folder.mkdir()
    for name, text in LONG_DOCS.items():
        (folder / name).write_text(text)
    ws = Workspace.open(root / "ws")
    create_index(ws, "manual", "all-minilm-l6-v2")
    ingest(ws, "manual", [Path(folder)])
    create_app(ws, AppSpec(name="manual", model=LLM, retrieval=RetrievalConfig(index="manual", top_k=2),
                           generation=GenerationSettings(max_new_tokens=4, temperature=0)))
    key, _ = create_key(ws, "*")
    return ws, key


def test_the_api_returns_every_passage_in_full(keyed) -> None:
    ws, key = keyed
    with TestClient(create_api(ws, require_keys=True)) as client:
        resp = client.post("/v1/apps/manual/completion", json={"query": QUESTION},
                           headers={"Authorization": f"Bearer {key}"})
    body = resp.json()
    assert resp.status_code == 200 and body["finish_reason"] == "length"  # 4 tokens cannot finish an answer
    assert len(body["passages"]) == 2
    for passage in body["passages"]:
        doc = LONG_DOCS[passage["document"]]
        assert len(passage["text"]) > 250 and passage["text"].split()[-3:] == doc.split()[-3:]
        assert passage["excerpt"] == passage["text"][:len(passage["excerpt"])] != passage["text"]
    assert all(r["text"] for r in body["references"])


def test_playground_in_headless_chromium(keyed, serve_api, chromium, monkeypatch: pytest.MonkeyPatch) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    ws, key = keyed
    api = create_api(ws, require_keys=True)
    with serve_api(api) as url:
        driver = chromium(offline=True)
        try:
            wait = WebDriverWait(driver, 90)
            driver.get(f"{url}/")
            hint = driver.find_element(By.ID, "hint")
            wait.until(lambda d: hint.is_displayed())
            assert "API key" in hint.text and "domainrag key create" in hint.text

            icon = driver.execute_async_script(
                "const done = arguments[0]; const link = document.querySelector('link[rel=icon]');"
                "fetch(link.href).then(r => done([link.href, r.status, r.headers.get('content-type')]));")
            assert icon == [f"{url}/favicon.svg", 200, "image/svg+xml"]

            driver.find_element(By.ID, "key").send_keys(key, Keys.TAB)  # "change": reload the apps with the key
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#app option[value=manual]"))
            wait.until(lambda d: not hint.is_displayed())

            def ask() -> object:
                driver.find_element(By.ID, "query").send_keys(QUESTION, Keys.ENTER)
                count = len(driver.find_elements(By.CSS_SELECTOR, ".msg.assistant .sources"))
                wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".msg.assistant .sources")) > count)
                return driver.find_elements(By.CSS_SELECTOR, ".msg.assistant")[-1]

            real = ask()  # the real model, cut at the app's 4 tokens
            cut = real.find_element(By.CSS_SELECTOR, ".cut")
            assert cut.is_displayed() and "token limit" in cut.text
            real.find_element(By.CSS_SELECTOR, ".sources > summary").click()
            assert len(real.find_elements(By.CSS_SELECTOR, ".source")) == 2
            assert "2 passages given" in real.find_element(By.CSS_SELECTOR, ".sources > summary").text

            # an answer citing only passage [2] (3 tokens: not cut): both passages shown, [2] marked cited, [1] not
            generator = api.state.apps.get("manual").generator
            monkeypatch.setattr(generator, "stream", lambda messages, config=None, cancel=None: iter(["[2]"]))
            cited = ask()
            assert not cited.find_elements(By.CSS_SELECTOR, ".cut")
            cited.find_element(By.CSS_SELECTOR, ".sources > summary").click()
            sources = cited.find_elements(By.CSS_SELECTOR, ".source")
            assert len(sources) == 2 and "1 cited" in cited.find_element(By.CSS_SELECTOR, ".sources > summary").text
            assert ["cited" in s.get_attribute("class").split() for s in sources] == [False, True]
            assert sources[1].find_element(By.CSS_SELECTOR, ".badge").text == "cited"
            assert sources[0].find_element(By.CSS_SELECTOR, ".badge").text == "not cited"

            passage = sources[1]
            excerpt = passage.find_element(By.CSS_SELECTOR, ".excerpt")
            full_text = passage.find_element(By.CSS_SELECTOR, ".full-text")
            assert excerpt.is_displayed() and not full_text.is_displayed() and len(excerpt.text) <= 251
            passage.find_element(By.CSS_SELECTOR, ".full > summary").click()
            wait.until(lambda d: full_text.is_displayed())
            document = next(name for name in LONG_DOCS if name in passage.find_element(By.CSS_SELECTOR, ".meta").text)
            assert len(full_text.text) > 250 and full_text.text.endswith(LONG_DOCS[document].split(". ")[-1])
            assert not excerpt.is_displayed()
            passage.find_element(By.CSS_SELECTOR, ".full > summary").click()  # and closed again
            wait.until(lambda d: not full_text.is_displayed() and excerpt.is_displayed())
            assert driver.find_element(By.ID, "hint").is_displayed() is False
        finally:
            driver.quit()
