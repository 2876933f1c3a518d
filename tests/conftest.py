"""Shared fixtures: an isolated workspace per test and the real (offline) base models."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from domainrag.data.loaders import Document

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def load_script() -> Callable[[str], ModuleType]:
    """``load_script("benchmarks/x.py")``: a repo script that is not part of the package, imported as a module."""
    import importlib.util

    def load(relative: str) -> ModuleType:
        path = REPO / relative
        spec = importlib.util.spec_from_file_location(path.stem, path)
        assert spec and spec.loader, path
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A fresh workspace (catalogue + local lake) in a temporary folder."""
    from domainrag.workspace import Workspace

    monkeypatch.delenv("DOMAINRAG_LAKE", raising=False)
    monkeypatch.setenv("DOMAINRAG_HOME", str(tmp_path / "ws"))
    return Workspace.open(tmp_path / "ws")


@pytest.fixture(scope="session")
def minilm():
    """The real all-MiniLM-L6-v2 embedder shipped in its PyPI package (384 dims)."""
    from domainrag.retrieval.embedder import load_embedder
    from domainrag.zoo import resolve_embedder

    return load_embedder(resolve_embedder("all-minilm-l6-v2"), "all-minilm-l6-v2")


@pytest.fixture(scope="session")
def sample_paths():
    from domainrag.data.sample import sample_paths as paths

    return paths()


def write_docs(folder: Path, docs: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in docs.items():
        (folder / name).write_text(text)
    return folder


@contextmanager
def _serve(api: Any) -> Iterator[str]:
    """``domainrag serve``'s FastAPI app under uvicorn on a free loopback port, in a thread; yields its base URL.
    The socket is bound here and handed to uvicorn, so no other process can take the port in between."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(api, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


@pytest.fixture(scope="session")
def serve_api() -> Callable[[Any], AbstractContextManager[str]]:
    """``with serve_api(app) as url``: a real HTTP server for tests that need one (SSE, disconnects, clients)."""
    return _serve


@pytest.fixture
def chromium() -> Callable[..., Any]:
    """``chromium(offline=False)``: a headless Debian chromium driven by Selenium (skips without them).
    ``offline``: every host but 127.0.0.1 fails to resolve, and anything else goes to a closed local port."""

    def start(offline: bool = False) -> Any:
        binary = shutil.which("chromium") or shutil.which("chromium-browser")
        chromedriver = shutil.which("chromedriver")
        if not binary or not chromedriver:
            pytest.skip("needs Debian's chromium and chromium-driver on PATH "
                        "(apt-get install chromium chromium-driver)")
        webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install selenium)")
        options = webdriver.ChromeOptions()
        options.binary_location = binary
        args = ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"]
        if offline:
            args += ["--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
                     "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=127.0.0.1"]
        for arg in args:
            options.add_argument(arg)
        return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=chromedriver))

    return start


@pytest.fixture
def cli_for(monkeypatch: pytest.MonkeyPatch) -> Callable[[Any], Any]:
    """``cli_for(ws)``: the real ``domainrag`` Typer app acting on an already opened workspace."""

    def make(ws: Any) -> Any:
        from domainrag.cli import _context
        from domainrag.cli.main import app

        handle = _context.WorkspaceHandle()
        handle.use(ws)
        monkeypatch.setattr(_context, "workspace", handle)
        return app

    return make


@pytest.fixture
def docs() -> list[Document]:
    """Four one-chunk manual pages, each answering one distinctive question."""
    return [
        Document("pumps.md", "# Pumps\n\nThe DP-220 dosing pump delivers up to 12 litres per hour at 10 bar.", "Pumps"),
        Document("warranty.md", "# Warranty\n\nControllers carry a 36-month warranty on parts and labour.", "Warranty"),
        Document("office.md", "# Offices\n\nThe Brackenford headquarters opens at 08:00 on weekdays.", "Offices"),
        Document(
            "probe.md", "# Probes\n\nThe PX-12 pH probe must be calibrated every 30 days with buffer 7.", "Probes"
        ),
    ]


# -- fault injection: a real Toxiproxy between domainrag and its real servers --------------------------
TOXIPROXY_SH = REPO / "scripts" / "services" / "toxiproxy.sh"
# name -> (toxic type, stream, attributes): what a bad network or a bad server does.
FAULTS: dict[str, tuple[str, str, dict[str, int]]] = {
    "stall": ("timeout", "downstream", {"timeout": 0}),  # accepts, then never answers
    "reset": ("reset_peer", "downstream", {"timeout": 0}),  # TCP reset on the first reply
    "cut": ("limit_data", "upstream", {"bytes": 20_000}),  # connection closed mid-upload
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Toxiproxy:
    """A running toxiproxy-server, driven through its HTTP API."""

    api: str

    def proxy(self, upstream: str) -> tuple[str, str]:
        """A new proxy to ``host:port``; returns (name, listen host:port)."""
        name = f"p{uuid.uuid4().hex[:8]}"
        listen = f"127.0.0.1:{_free_port()}"
        r = httpx.post(f"{self.api}/proxies", json={"name": name, "listen": listen, "upstream": upstream})
        r.raise_for_status()
        return name, r.json()["listen"]

    def toxic(self, proxy: str, fault: str) -> None:
        kind, stream, attributes = FAULTS[fault]
        body = {"name": fault, "type": kind, "stream": stream, "toxicity": 1.0, "attributes": attributes}
        httpx.post(f"{self.api}/proxies/{proxy}/toxics", json=body).raise_for_status()

    def latency(self, proxy: str, ms: int) -> None:
        body = {"name": "latency", "type": "latency", "stream": "downstream", "attributes": {"latency": ms}}
        httpx.post(f"{self.api}/proxies/{proxy}/toxics", json=body).raise_for_status()

    def enable(self, proxy: str, enabled: bool) -> None:
        httpx.post(f"{self.api}/proxies/{proxy}", json={"enabled": enabled}).raise_for_status()

    def heal(self, proxy: str) -> None:
        """Remove every toxic and re-enable the proxy."""
        for toxic in httpx.get(f"{self.api}/proxies/{proxy}/toxics").json():
            httpx.delete(f"{self.api}/proxies/{proxy}/toxics/{toxic['name']}").raise_for_status()
        self.enable(proxy, True)


@pytest.fixture(scope="session")
def toxiproxy() -> Iterator[Toxiproxy]:
    if shutil.which("go") is None:
        pytest.skip("Go toolchain not found: it is needed (once) to build toxiproxy for the fault tests")
    built = subprocess.run([str(TOXIPROXY_SH), "build"], capture_output=True, text=True, timeout=900)
    if built.returncode != 0:
        pytest.fail(f"scripts/services/toxiproxy.sh build failed:\n{built.stderr[-3000:]}")
    port = _free_port()
    proc = subprocess.Popen([built.stdout.strip(), "-host", "127.0.0.1", "-port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    api = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{api}/version", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail("toxiproxy-server did not start")
                time.sleep(0.1)
        yield Toxiproxy(api)
    finally:
        proc.terminate()
        proc.wait(10)
