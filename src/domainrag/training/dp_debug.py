"""Debug hooks that let a test prove data parallelism instead of trusting the configuration.

Off unless the environment asks for them (the data-parallel integration test sets these):

* ``DOMAINRAG_DEBUG_EXAMPLE_IDS=folder``: each process appends the ids (SFT: row index; encoders: the
  query text) of every training example it trains on to ``rank-<RANK>.txt``, and after every optimizer
  step a digest of its trainable weights to ``digest-<RANK>.txt``.
* ``DOMAINRAG_DEBUG_CRASH_AFTER_SAVE=N``: raise right after the checkpoint of step N is written (a
  pre-emption), so ``job resume`` can be tested from a real multi-process checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

DEBUG_IDS_ENV = "DOMAINRAG_DEBUG_EXAMPLE_IDS"
CRASH_ENV = "DOMAINRAG_DEBUG_CRASH_AFTER_SAVE"


def debug_file(kind: str) -> Path | None:
    """``<folder>/<kind>-<RANK>.txt`` when the ids hook is on, else None."""
    folder = os.environ.get(DEBUG_IDS_ENV)
    if not folder:
        return None
    Path(folder).mkdir(parents=True, exist_ok=True)
    return Path(folder) / f"{kind}-{os.environ.get('RANK', '0')}.txt"


def record_ids(ids: list[Any]) -> None:
    """Append one batch's example ids (JSON, one per line) to this process's file, when the hook is on."""
    path = debug_file("rank")
    if path is not None and ids:
        with path.open("a", encoding="utf-8") as fh:
            fh.write("".join(json.dumps(i) + "\n" for i in ids))


class RecordingCollator:
    """Wraps a sentence-transformers collator: records each training row's first text column (the query)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:  # the trainers read attributes of their collator
        return getattr(self.inner, name)

    def __call__(self, features: list[dict[str, Any]]) -> Any:
        key = next(k for k, v in features[0].items() if isinstance(v, str))
        record_ids([f[key] for f in features])
        return self.inner(features)


class DebugCallback(TrainerCallback):
    """Per-step weight digests and the simulated crash (see the module docstring)."""

    def on_step_end(self, _args: Any, state: Any, _control: Any, model: Any = None, **_: Any) -> None:
        path = debug_file("digest")
        if path is None or model is None:
            return
        h = hashlib.sha256()
        for name, p in sorted(model.named_parameters()):
            if p.requires_grad:
                h.update(name.encode())
                h.update(p.detach().float().cpu().numpy().tobytes())
        with path.open("a", encoding="utf-8") as fh:
            fh.write(f"{state.global_step} {h.hexdigest()}\n")

    def on_save(self, _args: Any, state: Any, _control: Any, **_: Any) -> None:
        if os.environ.get(CRASH_ENV) == str(state.global_step):
            raise RuntimeError(f"debug crash after the checkpoint of step {state.global_step}")


def debug_on() -> bool:
    """True when any debug hook is asked for."""
    return bool(os.environ.get(DEBUG_IDS_ENV) or os.environ.get(CRASH_ENV))
