"""Fixtures shared by the training tests: one torch thread and the real (offline) base models."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op thread: far faster than two on a busy 2-core CI box, and deterministic.

    Opt in per module with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def embedder() -> str:
    """Local folder of the all-MiniLM-L6-v2 sentence-transformers model."""
    from domainrag.zoo import resolve_embedder

    return resolve_embedder("all-minilm-l6-v2")
