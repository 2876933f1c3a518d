"""Real single-node OpenSearch / Elasticsearch servers for the store integration tests.

Started by the project's own scripts (downloaded through Maven on first use, cached outside the
repo) and stopped after the session if this session started them.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts" / "services"


def _service(script: str) -> Iterator[str]:
    path = SCRIPTS / script
    was_running = subprocess.run([str(path), "status"], capture_output=True).returncode == 0
    start = subprocess.run([str(path), "start"], capture_output=True, text=True, timeout=900)
    if start.returncode != 0:
        pytest.fail(f"{script} start failed:\n{start.stdout[-3000:]}\n{start.stderr[-3000:]}")
    url = subprocess.run([str(path), "url"], capture_output=True, text=True, check=True).stdout.strip()
    yield url
    if not was_running:
        subprocess.run([str(path), "stop"], capture_output=True, timeout=120)


@pytest.fixture(scope="session")
def opensearch_url() -> Iterator[str]:
    yield from _service("opensearch.sh")


@pytest.fixture(scope="session")
def elasticsearch_url() -> Iterator[str]:
    yield from _service("elasticsearch.sh")
