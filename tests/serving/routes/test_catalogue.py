"""Catalogue views: models, apps and indexes."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

pytestmark = pytest.mark.integration

LLM = "smollm2-135m-instruct"


def test_catalogue_views(client: TestClient) -> None:
    models = client.get("/v1/models").json()
    ids = {m["id"] for m in models["data"]}
    assert models["object"] == "list" and {LLM, "app:docs", "app:strict", "app:hr"} <= ids
    assert all(m["object"] == "model" for m in models["data"])
    apps = {a["name"]: a for a in client.get("/v1/apps").json()["data"]}
    assert apps["docs"]["index"] == "kb" and apps["docs"]["model"] == LLM
    indexes = {i["name"]: i for i in client.get("/v1/indexes").json()["data"]}
    assert set(indexes) == {"kb", "hr"} and indexes["kb"]["dimension"] == 384 and indexes["kb"]["chunks"] == 3
