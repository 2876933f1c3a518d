"""Training precision: auto follows the hardware; autocast only for bf16."""

from __future__ import annotations

import contextlib

import pytest
import torch

from domainrag.training import precision
from domainrag.training.precision import autocast, resolve_precision


def test_precision_auto_follows_the_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_precision("fp32") == "fp32" and resolve_precision("bf16") == "bf16"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(precision, "native_bf16", lambda: True)
    assert resolve_precision("auto") == "bf16"
    monkeypatch.setattr(precision, "native_bf16", lambda: False)
    assert resolve_precision("auto") == "fp32"


def test_autocast_is_bf16_or_nothing() -> None:
    assert isinstance(autocast("fp32", "cpu"), contextlib.nullcontext)
    with autocast("bf16", "cpu"):
        out = torch.ones(2, 2) @ torch.ones(2, 2)
    assert out.dtype == torch.bfloat16
