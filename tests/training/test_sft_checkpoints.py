"""SFT checkpoints: the Trainer's newest checkpoint, and refusal of a resume with other data."""

from __future__ import annotations

from pathlib import Path

import pytest

from domainrag.errors import DomainRagError
from domainrag.training.sft_checkpoints import STATE_FILE, last_checkpoint, read_run_state, write_run_state


def test_last_checkpoint_is_the_highest_step(tmp_path: Path) -> None:
    assert last_checkpoint(tmp_path / "none") is None
    assert last_checkpoint(tmp_path) is None
    for step in (2, 10, 4):
        (tmp_path / f"checkpoint-{step}").mkdir()
    assert last_checkpoint(tmp_path) == (10, tmp_path / "checkpoint-10")


def test_run_state_round_trips_and_refuses_other_data(tmp_path: Path) -> None:
    assert read_run_state(tmp_path, "abc") == {}  # checkpoints without a state file: nothing to check
    write_run_state(tmp_path, "abc", eval_loss_before=1.5)
    assert (tmp_path / STATE_FILE).is_file() and not list(tmp_path.glob(".*.tmp"))
    assert read_run_state(tmp_path, "abc") == {"fingerprint": "abc", "eval_loss_before": 1.5}
    with pytest.raises(DomainRagError, match="different data, seed or batch settings"):
        read_run_state(tmp_path, "other")
