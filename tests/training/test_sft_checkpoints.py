"""SFT checkpoints: atomic writes, pruning, exact RNG restore, refusal of other data."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import torch

from domainrag.errors import DomainRagError
from domainrag.training.sft_checkpoints import (
    STATE_FILE,
    list_checkpoints,
    restore_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)


class _Model:
    """Stands in for a peft model: save_pretrained writes a folder."""

    def save_pretrained(self, folder: Path) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "adapter_config.json").write_text("{}")


def _state(step: int) -> dict[str, Any]:
    return {"step": step, "fingerprint": "abc", "stats": {"step": step}, "rng": rng_state()}


def test_save_keeps_the_newest_and_lists_complete_ones_only(tmp_path: Path) -> None:
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, _Model(), _state(step), keep=2)
    (tmp_path / "step-0000009").mkdir()  # no state file: an interrupted write never counts
    assert [s for s, _ in list_checkpoints(tmp_path)] == [2, 3]
    assert all((p / STATE_FILE).is_file() for _, p in list_checkpoints(tmp_path))
    assert list_checkpoints(tmp_path / "none") == []


def test_rng_state_round_trips() -> None:
    saved = rng_state()
    expected = (torch.rand(3), random.random())
    set_rng_state(saved)
    again = (torch.rand(3), random.random())
    assert torch.equal(expected[0], again[0]) and expected[1] == again[1]


def test_restore_refuses_a_checkpoint_of_other_data(tmp_path: Path) -> None:
    assert restore_checkpoint(tmp_path, None, None, None, "abc") is None
    save_checkpoint(tmp_path, _Model(), _state(5), keep=2)
    with pytest.raises(DomainRagError, match="different data, seed or batch settings"):
        restore_checkpoint(tmp_path, None, None, None, "other")
