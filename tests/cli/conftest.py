"""The CLI tests share the evaluation fixtures: an isolated workspace (the CLI's workspace handle reset
around each test), a deterministic fake embedder and a tiny BEIR folder."""

from __future__ import annotations

from ..evaluation.conftest import beir_dir, fake_embedder, isolated_workspace

__all__ = ["beir_dir", "fake_embedder", "isolated_workspace"]
