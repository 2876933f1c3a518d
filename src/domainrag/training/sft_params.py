"""SFT hyper-parameters and their validation, without importing torch.

Kept apart from :mod:`domainrag.training.sft` so that ``job create`` can reject a bad
hyper-parameter (unknown name, wrong type, early stopping without an eval split ...) in
milliseconds, before a job is recorded, instead of failing in the worker after model loading.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from domainrag.errors import DomainRagError
from domainrag.training.precision import PRECISIONS
from domainrag.zoo import GENERATOR_ARCHITECTURES, local_model_config

# fields a job sets itself (from the spec and its folder); not hyper-parameters
RESERVED = ("base_model", "dataset", "output_dir", "checkpoint_dir", "resume")


@dataclass
class SFTArgs:
    """Hyper-parameters and locations of one SFT run (checked in ``__post_init__``)."""

    base_model: str  # local folder (see domainrag.zoo.resolve_llm) or hub id
    dataset: Path  # chat JSONL in any format read_chat_dataset accepts
    output_dir: Path
    epochs: float = 3
    max_steps: int | None = None  # optimizer steps; overrides epochs when set
    learning_rate: float = 2e-4
    batch_size: int = 4
    grad_accum: int = 1
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    lora_layers: int | None = None  # adapt only the top N transformer layers (None: all)
    max_seq_len: int = 512
    eval_fraction: float = 0.1
    seed: int = 0
    checkpoint_dir: Path | None = None
    resume: bool = False
    merge: bool = False
    save_every: int = 50  # checkpoint every N optimizer steps (and at the end)
    keep_checkpoints: int = 2
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    # padding-free packing: each micro-batch is one row of concatenated conversations with
    # position ids restarting per conversation (transformers' DataCollatorWithFlattening)
    packing: bool = False
    # held-out loss every N optimizer steps (None: only before and after training)
    eval_every: int | None = None
    # stop after this many evaluations without an improvement of at least min_delta (None: off)
    early_stopping_patience: int | None = None
    early_stopping_min_delta: float = 0.0
    # with early stopping: save the adapter of the best evaluation, not the last step's
    restore_best: bool = True
    # "auto": bf16 autocast (fp32 weights and optimizer) where the hardware multiplies bf16 natively
    precision: str = "auto"

    def __post_init__(self) -> None:
        self.target_modules = tuple(self.target_modules)
        for name in ("batch_size", "grad_accum", "lora_r", "max_seq_len", "save_every"):
            _require(isinstance(getattr(self, name), int) and getattr(self, name) >= 1, name, "an integer ≥ 1")
        for name in ("max_steps", "lora_layers", "eval_every", "early_stopping_patience"):
            value = getattr(self, name)
            _require(value is None or (isinstance(value, int) and value >= 1), name, "an integer ≥ 1 or null")
        _require(_number(self.epochs) and self.epochs > 0, "epochs", "a number > 0")
        _require(_number(self.learning_rate) and self.learning_rate > 0, "learning_rate", "a number > 0")
        _require(_number(self.eval_fraction) and 0 <= self.eval_fraction < 1, "eval_fraction", "in [0, 1)")
        _require(_number(self.lora_dropout) and 0 <= self.lora_dropout < 1, "lora_dropout", "in [0, 1)")
        _require(_number(self.warmup_ratio) and 0 <= self.warmup_ratio < 1, "warmup_ratio", "in [0, 1)")
        _require(
            _number(self.early_stopping_min_delta) and self.early_stopping_min_delta >= 0,
            "early_stopping_min_delta",
            "a number ≥ 0",
        )
        _require(isinstance(self.packing, bool), "packing", "true or false")
        _require(self.precision in PRECISIONS, "precision", "one of " + ", ".join(PRECISIONS))
        if self.early_stopping_patience is not None:
            if self.eval_fraction <= 0:
                raise DomainRagError(
                    "early stopping needs a held-out split, but eval_fraction is 0",
                    hint="set eval_fraction (e.g. 0.1) or drop early_stopping_patience",
                )
            if self.eval_every is None:
                raise DomainRagError(
                    "early stopping needs periodic evaluation, but eval_every is not set",
                    hint="set eval_every (optimizer steps between held-out evaluations)",
                )


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _require(ok: bool, name: str, what: str) -> None:
    if not ok:
        raise DomainRagError(f"SFT hyper-parameter '{name}' must be {what}")


HYPERPARAMETERS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(SFTArgs) if f.name not in RESERVED)


def check_sft_hyperparameters(hyperparameters: Mapping[str, Any]) -> SFTArgs:
    """Validate a job's SFT hyper-parameters; unknown names and bad values raise DomainRagError."""
    unknown = sorted(set(hyperparameters) - set(HYPERPARAMETERS))
    if unknown:
        raise DomainRagError(
            f"unknown SFT hyper-parameter(s): {', '.join(unknown)}",
            hint=f"valid ones: {', '.join(HYPERPARAMETERS)}",
        )
    return SFTArgs(base_model="-", dataset=Path("-"), output_dir=Path("-"), **dict(hyperparameters))




def check_sft_base_model(model: str) -> None:
    """Refuse a local base model folder that is not a chat-capable causal LM, before any loading.

    An encoder (BERT, MiniLM ...) or a folder without a chat template would otherwise fail in the
    worker after the dataset was tokenised and the weights loaded. Short names from the zoo and hub
    ids (not local) are not checked here.
    """
    import json

    found = local_model_config(
        model, hint="use smollm2-135m-instruct, qwen2.5-0.5b-instruct, a transformers causal-LM folder or a hub id")
    if found is None:
        return
    cfg, archs = found
    path = Path(model).expanduser()
    if not any(a.endswith(GENERATOR_ARCHITECTURES) for a in archs):
        found = ", ".join(archs) or cfg.get("model_type") or "unknown architecture"
        raise DomainRagError(
            f"base model '{model}' is not a causal language model ({found})",
            hint="SFT fine-tunes a text generator (…ForCausalLM); use --algorithm embedding or reranker for encoders",
        )
    tok_cfg = path / "tokenizer_config.json"
    has_template = (path / "chat_template.jinja").is_file() or (path / "chat_template.json").is_file()
    if not has_template and tok_cfg.is_file():
        has_template = bool(json.loads(tok_cfg.read_text(encoding="utf-8")).get("chat_template"))
    if not has_template:
        raise DomainRagError(
            f"base model '{model}' has no chat template",
            hint="SFT trains on the model's own chat template: use an instruct/chat model",
        )
