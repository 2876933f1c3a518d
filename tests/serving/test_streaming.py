"""Streaming: a client that disconnects stops its generation and frees its slot."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from domainrag.serving.api import create_api

pytestmark = pytest.mark.integration


class SlowFakeGenerator:
    """Yields a token every 20 ms until cancelled; records how it ended."""

    def __init__(self) -> None:
        self.cancelled = threading.Event()
        self.tokenizer = None

    def prompt_ids(self, messages: Any) -> list[list[int]]:
        return [[1, 2, 3]]

    def stream(self, messages: Any, config: Any = None, cancel: threading.Event | None = None) -> Iterator[str]:
        finished = False
        try:
            for i in range(5000):
                if cancel is not None and cancel.is_set():
                    return
                yield f"t{i} "
                time.sleep(0.02)
            finished = True
        finally:
            # stopped early either way the server can stop it: the cancel event, or closing the iterator
            if not finished:
                self.cancelled.set()


def test_client_disconnect_stops_generation(served_ws, monkeypatch: pytest.MonkeyPatch, serve_api) -> None:
    api = create_api(served_ws, require_keys=False, max_concurrent=1, queue_timeout=0)
    fake = SlowFakeGenerator()
    monkeypatch.setattr(api.state.apps.get("docs"), "generator", fake)
    with serve_api(api) as url:
        with httpx.Client(base_url=url, timeout=30) as http, http.stream(
            "POST", "/v1/apps/docs/completion", json={"query": "DP-220 pump?", "stream": True}
        ) as resp:
            assert resp.status_code == 200
            first = next(line for line in resp.iter_lines() if line.startswith("data: "))
            assert first.startswith('data: {"type": "token"')
        # the connection is closed: generation must stop and its slot come back
        assert fake.cancelled.wait(10), "generation went on after the client left"
        deadline = time.monotonic() + 10
        while (slot := api.state.limiter.try_acquire()) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert slot is not None
        slot.release()
