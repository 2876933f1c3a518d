"""SFT checkpoints: adapter + optimizer, scheduler, step, RNG and early-stopping state.

A checkpoint holds everything the loop needs to continue exactly where it stopped: no batch is
repeated or skipped on resume, and the final weights match an uninterrupted run. Checkpoints are
written atomically (temporary folder, then rename); only the newest ``keep`` stay.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import torch
from peft import set_peft_model_state_dict
from safetensors.torch import load_file

from domainrag.errors import DomainRagError

STATE_FILE = "training_state.pt"
PREFIX = "step-"


def list_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints in ``folder``, oldest first."""
    if not folder.is_dir():
        return []
    found = [
        (int(p.name[len(PREFIX) :]), p)
        for p in folder.iterdir()
        if p.is_dir() and p.name.startswith(PREFIX) and (p / STATE_FILE).exists()
    ]
    return sorted(found)


def save_checkpoint(folder: Path, model: Any, state: dict[str, Any], keep: int) -> Path:
    """Write adapter + training state atomically (temp folder, then rename); prune old ones."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{PREFIX}{state['step']:07d}"
    tmp = folder / f".tmp-{target.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    torch.save(state, tmp / STATE_FILE)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    for _step, old in list_checkpoints(folder)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return target


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def restore_checkpoint(
    folder: Path, model: Any, optimizer: Any, scheduler: Any, fingerprint: str
) -> tuple[int, dict[str, Any], Path] | None:
    """Load the newest checkpoint in ``folder`` into model, optimizer, scheduler and the RNGs.

    Returns (step, stats, checkpoint folder), or None when there is none. A checkpoint made with
    other data, seed or batch settings (``fingerprint``) is refused: resuming it would be wrong.
    """
    found = list_checkpoints(folder)
    if not found:
        return None
    step, ckpt = found[-1]
    state = torch.load(ckpt / STATE_FILE, weights_only=True)
    if state["fingerprint"] != fingerprint:
        raise DomainRagError(
            f"checkpoint {ckpt} was made with different data, seed or batch settings",
            hint="resume with the original dataset and arguments, or start without --resume",
        )
    set_peft_model_state_dict(model, load_file(str(ckpt / "adapter_model.safetensors")))
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    return step, state["stats"], ckpt
