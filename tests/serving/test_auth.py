"""API keys on requests: scoped to their app, required once one exists, stored as hashes only."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from domainrag.serving.api import create_api

pytestmark = pytest.mark.integration

LLM = "smollm2-135m-instruct"


@pytest.fixture
def docs_key(served_ws) -> Iterator[str]:
    from domainrag.serving.keys import create_key

    token, _ = create_key(served_ws, "docs")
    yield token
    for record in served_ws.catalog.list("key"):
        served_ws.catalog.delete("key", record["name"])


def test_keys_scope_requests_to_their_app(served_ws, docs_key: str, openai_error) -> None:
    from domainrag.serving.keys import revoke_key

    api = create_api(served_ws)  # require_keys=None: required because a key exists
    auth = {"Authorization": f"Bearer {docs_key}"}
    with TestClient(api) as client:
        assert client.get("/healthz").status_code == 200
        missing = client.get("/v1/apps")
        assert openai_error(missing, 401)["type"] == "authentication_error"
        assert missing.headers["www-authenticate"] == "Bearer"
        openai_error(client.get("/v1/apps", headers={"Authorization": "Bearer dr-wrong"}), 401)
        openai_error(client.get("/v1/apps", headers={"Authorization": f"Basic {docs_key}"}), 401)

        assert [a["name"] for a in client.get("/v1/apps", headers=auth).json()["data"]] == ["docs"]
        assert [i["name"] for i in client.get("/v1/indexes", headers=auth).json()["data"]] == ["kb"]
        listed = {m["id"]: m["kind"] for m in client.get("/v1/models", headers=auth).json()["data"]}
        assert listed == {"app:docs": "app", "all-minilm-l6-v2": "embedding"}  # its app and its index's embedder
        ok = client.post("/v1/apps/docs/completion", headers=auth, json={"query": "CTL-400 warranty?"})
        assert ok.status_code == 200, ok.text

        forbidden = client.post("/v1/apps/hr/completion", headers=auth, json={"query": "holidays?"})
        assert openai_error(forbidden, 403)["type"] == "permission_error"
        openai_error(client.get("/v1/apps/hr", headers=auth), 403)
        openai_error(client.post("/v1/apps/unknown/completion", headers=auth, json={"query": "x"}), 403)
        for model in ("app:hr", LLM):
            openai_error(client.post("/v1/chat/completions", headers=auth, json={
                "model": model, "messages": [{"role": "user", "content": "x"}]}), 403)

        key_id = served_ws.catalog.list("key")[0]["name"]
        revoke_key(served_ws, key_id)
        openai_error(client.get("/v1/apps", headers=auth), 401)
        openai_error(client.get("/v1/apps"), 401)  # revoking the last key does not open the server


def test_keys_are_stored_as_hashes_only(served_ws, docs_key: str) -> None:
    import hashlib

    from domainrag.serving.keys import list_keys, verify_key

    assert docs_key.startswith("dr-") and len(docs_key) > 40
    (record,) = served_ws.catalog.list("key")
    assert record["sha256"] == hashlib.sha256(docs_key.encode()).hexdigest() and record["app"] == "docs"
    assert docs_key not in json.dumps(record)
    raw = b"".join(p.read_bytes() for p in served_ws.settings.workspace.glob("catalog.db*"))
    assert docs_key.encode() not in raw and record["sha256"].encode() in raw
    assert "sha256" not in list_keys(served_ws)[0]
    assert verify_key(served_ws, docs_key).app == "docs"
    assert verify_key(served_ws, docs_key[:-1] + ("A" if docs_key[-1] != "A" else "B")) is None
