"""SFT checkpoints: the Trainer's own (``checkpoint-N`` folders), plus what only domainrag checks.

The Trainer saves adapter, optimizer, scheduler, RNG and callback state (early stopping included)
and resumes exactly from them. What it does not do is notice that a resumed run was given other
data or batch settings, which would silently continue on a different data order: the run's
fingerprint (and the held-out loss measured before training) is kept in ``domainrag_sft_state.json``
next to the checkpoints and checked on resume.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint

from domainrag.errors import DomainRagError

STATE_FILE = "domainrag_sft_state.json"


def last_checkpoint(folder: Path) -> tuple[int, Path] | None:
    """(step, folder) of the newest complete Trainer checkpoint in ``folder``, or None."""
    if not folder.is_dir():
        return None
    found = get_last_checkpoint(str(folder))
    if found is None:
        return None
    path = Path(found)
    return int(path.name[len(PREFIX_CHECKPOINT_DIR) + 1 :]), path


def write_run_state(folder: Path, fingerprint: str, **values: Any) -> None:
    """Record the run's fingerprint (and e.g. the loss before training) next to its checkpoints."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{STATE_FILE}.tmp"
    tmp.write_text(json.dumps({"fingerprint": fingerprint, **values}), encoding="utf-8")
    tmp.replace(folder / STATE_FILE)


def read_run_state(folder: Path, fingerprint: str) -> dict[str, Any]:
    """The recorded run state; refuses checkpoints made with other data, seed or batch settings."""
    path = folder / STATE_FILE
    state: dict[str, Any] = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    if state.get("fingerprint", fingerprint) != fingerprint:
        raise DomainRagError(
            f"checkpoints in {folder} were made with different data, seed or batch settings",
            hint="resume with the original dataset and arguments, or start without --resume",
        )
    return state
