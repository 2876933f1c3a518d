"""Typed hyper-parameters of the three training algorithms, and the run arguments built from them.

One pydantic model per algorithm (:class:`SFTHyperparameters`, :class:`EmbeddingHyperparameters`,
:class:`RerankerHyperparameters`), each field with a description, strict types and bounds. They are
light (no torch), so ``job create`` refuses an unknown name or a bad value before a job is recorded,
with a :class:`DomainRagError` that names the field and says what to do. The ``*Args`` models add
where a run reads and writes (base model folder, dataset, output and checkpoint folders); the
training functions take those.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo

from domainrag.errors import DomainRagError

Precision = Literal["auto", "fp32", "bf16"]
FineTuning = Literal["lora", "qlora", "full"]
SyntheticMode = Literal["llm", "heuristic"]
SYNTHETIC_MODES: tuple[str, ...] = get_args(SyntheticMode)

_POSITIVE = "an integer ≥ 1"
_OPTIONAL_POSITIVE = "an integer ≥ 1 or null"
_FRACTION = "a number in [0, 1)"


def hp(default: Any = None, doc: str = "", *, must: str | None = None, noun: str | None = None,
       example: str | None = None, **constraints: Any) -> Any:
    """A hyper-parameter field: ``doc`` is its description; ``must`` / ``noun`` / ``example`` word its errors."""
    extra = {k: v for k, v in (("must", must), ("noun", noun), ("example", example)) if v is not None}
    if callable(default):
        return Field(default_factory=default, description=doc, json_schema_extra=extra or None, **constraints)
    return Field(default, description=doc, json_schema_extra=extra or None, **constraints)


def _example(name: str, info: FieldInfo) -> str:
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    if "example" in extra:
        return str(extra["example"])
    default = info.get_default(call_default_factory=True)
    return json.dumps(default, separators=(",", ":")) if default is not None else "..."


def hyperparameter_error(
    label: str, model: type[BaseModel], exc: ValidationError, given: Mapping[str, Any]
) -> DomainRagError:
    """The first problem of ``exc`` as a DomainRagError naming the field and what to do."""
    names = [n for n in model.model_fields if n not in RunLocations.model_fields]
    errors = exc.errors()
    unknown = sorted({str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden" and e["loc"]})
    if unknown:
        return DomainRagError(
            f"unknown {label} hyper-parameter(s): {', '.join(unknown)}", hint=f"valid ones: {', '.join(names)}"
        )
    err = errors[0]
    if not err["loc"]:
        return DomainRagError(f"{label} hyper-parameters: {err['msg']}")
    name = str(err["loc"][0])
    info = model.model_fields[name]
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    value = given.get(name)
    if err["type"] == "literal_error":
        return DomainRagError(
            f"{label} hyper-parameter '{name}'={value!r}: unknown {extra.get('noun', name)}",
            hint=f"use {err['ctx']['expected']} ({info.description})",
        )
    why = str(err["ctx"]["error"]) if err["type"] == "value_error" else f"must be {extra.get('must', err['msg'])}"
    return DomainRagError(
        f"{label} hyper-parameter '{name}' {why} (got {value!r})",
        hint=f"{info.description}; e.g. --hp {name}={_example(name, info)}",
    )


class Hyperparameters(BaseModel):
    """Strict (no "4" for 4), closed (no unknown names); errors become :class:`DomainRagError`."""

    model_config = ConfigDict(extra="forbid", strict=True, validate_default=False)
    LABEL: ClassVar[str] = ""

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise hyperparameter_error(self.LABEL, type(self), exc, data) from None


class RunLocations(BaseModel):
    """Where one training run reads and writes; set by the job worker, never a hyper-parameter."""

    base_model: str = Field(description="local model folder (see domainrag.zoo) or hub id", strict=False)
    dataset: Path = Field(description="training data file (or document corpus for encoders)", strict=False)
    output_dir: Path = Field(description="where the trained artifact is saved", strict=False)
    checkpoint_dir: Path | None = Field(None, description="checkpoints for resume (None: none)", strict=False)
    resume: bool = Field(False, description="continue from the last checkpoint in checkpoint_dir")


# ---------------------------------------------------------------------------------------------
# SFT


class SFTHyperparameters(Hyperparameters):
    """LoRA supervised fine-tuning of a chat LLM (see :mod:`domainrag.training.sft`)."""

    LABEL: ClassVar[str] = "SFT"

    epochs: float = hp(3, "passes over the training conversations", must="a number > 0", gt=0)
    max_steps: int | None = hp(None, "optimizer steps; overrides epochs when set", must=_OPTIONAL_POSITIVE,
                               example="100", ge=1)
    learning_rate: float = hp(2e-4, "peak AdamW learning rate (cosine schedule)", must="a number > 0", gt=0)
    batch_size: int = hp(4, "conversations per micro-batch", must=_POSITIVE, ge=1)
    grad_accum: int = hp(1, "micro-batches per optimizer step", must=_POSITIVE, ge=1)
    lora_r: int = hp(16, "LoRA rank", must=_POSITIVE, ge=1)
    lora_alpha: int = hp(32, "LoRA scaling numerator (scale = alpha / r)", must="an integer")
    lora_dropout: float = hp(0.05, "dropout on the LoRA input", must=_FRACTION, ge=0, lt=1)
    target_modules: list[str] = hp(lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
                                   "names of the linear layers that get LoRA adapters", must="a list of names")
    lora_layers: int | None = hp(None, "adapt only the top N transformer layers (null: all)",
                                 must=_OPTIONAL_POSITIVE, example="12", ge=1)
    max_seq_len: int = hp(512, "tokens per conversation; longer ones are cut", must=_POSITIVE, ge=1)
    eval_fraction: float = hp(0.1, "share of conversations held out for the eval loss", must=_FRACTION, ge=0, lt=1)
    seed: int = hp(0, "seed of the split, the data order and LoRA initialisation", must="an integer")
    merge: bool = hp(False, "also save the base model with the adapter merged in", must="true or false")
    save_every: int = hp(50, "checkpoint every N optimizer steps (and at the end)", must=_POSITIVE, ge=1)
    keep_checkpoints: int = hp(2, "newest checkpoints kept (0: all)", must="an integer ≥ 0", ge=0)
    warmup_ratio: float = hp(0.05, "share of the steps spent warming up the learning rate", must=_FRACTION,
                             ge=0, lt=1)
    weight_decay: float = hp(0.0, "AdamW weight decay", must="a number ≥ 0", ge=0)
    max_grad_norm: float = hp(1.0, "gradient clipping norm (0: off)", must="a number ≥ 0", ge=0)
    packing: bool = hp(False, "padding-free packing: each micro-batch becomes rows of concatenated "
                       "conversations with position ids restarting per conversation", must="true or false")
    eval_every: int | None = hp(None, "held-out loss every N optimizer steps (null: before and after only)",
                                must=_OPTIONAL_POSITIVE, example="10", ge=1)
    early_stopping_patience: int | None = hp(None, "stop after this many evaluations without improvement "
                                             "(null: off)", must=_OPTIONAL_POSITIVE, example="3", ge=1)
    early_stopping_min_delta: float = hp(0.0, "smallest eval-loss drop that counts as an improvement",
                                         must="a number ≥ 0", ge=0)
    restore_best: bool = hp(True, "with early stopping: save the best evaluation's adapter, not the last",
                            must="true or false")
    precision: Precision = hp("auto", "auto (bf16 autocast where the hardware has native bf16), fp32 or bf16")
    finetuning: FineTuning = hp("lora", "lora: adapters on a full-precision base; qlora: adapters on a 4-bit base "
                                "(bitsandbytes, CUDA only); full: every weight trained", noun="fine-tuning method")
    gradient_checkpointing: bool = hp(False, "recompute activations in the backward pass: less memory, ~30% "
                                      "more compute", must="true or false")

    @model_validator(mode="after")
    def _early_stopping(self) -> SFTHyperparameters:
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
        return self


# ---------------------------------------------------------------------------------------------
# Sentence-transformers encoders: embedding and reranker


class EncoderHyperparameters(Hyperparameters):
    """Options shared by the embedding and reranker trainings (see :mod:`domainrag.training.st_common`)."""

    epochs: int = hp(1, "passes over the training pairs", must=_POSITIVE, ge=1)
    batch_size: int = hp(32, "pairs per batch", must=_POSITIVE, ge=1)
    learning_rate: float = hp(5e-5, "peak learning rate", must="a number > 0", gt=0)
    warmup_ratio: float = hp(0.1, "share of the steps spent warming up the learning rate", must=_FRACTION,
                             ge=0, lt=1)
    eval_fraction: float = hp(0.15, "share of queries held out for evaluation", must=_FRACTION, ge=0, lt=1)
    hard_negatives: int = hp(0, "hard negatives mined per pair with the base model (0: none)",
                             must="an integer ≥ 0", ge=0)
    synthetic_queries: SyntheticMode | None = hp(None, "how queries are written for a document corpus "
                                                 "(null: heuristic when the dataset is a corpus)", noun="mode")
    synthetic_llm: str = hp("smollm2-135m-instruct", "instruction model that writes llm-mode queries",
                            must="a model name")
    synthetic_per_passage: int = hp(1, "synthetic queries per passage", must="a positive integer", ge=1)
    synthetic_max_passages: int | None = hp(None, "first N passages only (null: all)",
                                            must=_OPTIONAL_POSITIVE, example="500", ge=1)
    synthetic_roundtrip_k: int = hp(10, "keep a synthetic query only if the base model finds its passage in "
                                    "its top k (0: off)", must="an integer ≥ 0", ge=0)
    seed: int = hp(0, "seed of the split and the data order", must="an integer")
    save_steps: int = hp(100, "checkpoint interval in optimizer steps", must=_POSITIVE, ge=1)
    precision: Precision = hp("auto", "auto (bf16 where the hardware has it), fp32 or bf16")


class EmbeddingHyperparameters(EncoderHyperparameters):
    """Bi-encoder fine-tuning (see :mod:`domainrag.training.embedding`)."""

    LABEL: ClassVar[str] = "embedding"

    max_seq_length: int | None = hp(None, "tokens per text (null: the model's own limit)",
                                    must=_OPTIONAL_POSITIVE, example="256", ge=1)
    loss: Literal["mnrl", "cached_mnrl"] = hp("mnrl", "in-batch negatives loss; cached_mnrl (GradCache) trains "
                                             "large batches in mini_batch_size memory")
    mini_batch_size: int = hp(32, "cached_mnrl: texts per forward pass (memory), not the contrastive batch",
                              must="a positive integer", ge=1)
    matryoshka_dims: list[Annotated[int, Field(ge=1)]] | None = hp(
        None, "wrap the loss in MatryoshkaLoss at these dimensions", must="a list of distinct positive integers",
        example="[384,256,128,64]")

    @field_validator("matryoshka_dims")
    @classmethod
    def _distinct(cls, dims: list[int] | None) -> list[int] | None:
        if dims is not None and (not dims or len(set(dims)) != len(dims)):
            raise ValueError("must be a list of distinct positive integers")
        return dims


class RerankerHyperparameters(EncoderHyperparameters):
    """Cross-encoder training (see :mod:`domainrag.training.reranker`)."""

    LABEL: ClassVar[str] = "reranker"

    batch_size: int = hp(16, "training rows per batch", must=_POSITIVE, ge=1)
    learning_rate: float = hp(2e-5, "peak learning rate", must="a number > 0", gt=0)
    loss: Literal["mnrl", "bce"] = hp("mnrl", "mnrl: listwise over positive + hard + in-batch negatives; "
                                      "bce: pointwise", noun="reranker loss")
    in_batch_negatives: int = hp(2, "mnrl: other passages of the batch added to each query's softmax",
                                 must="a positive integer", ge=1)
    hard_negatives: int = hp(3, "mined per query with the bi-encoder of base_model (0: dataset negatives only)",
                             must="an integer ≥ 0", ge=0)
    eval_candidates: int = hp(20, "bi-encoder top-n reranked per held-out query", must=_POSITIVE, ge=1)
    max_length: int = hp(256, "tokens per (query, passage) row", must=_POSITIVE, ge=1)


# ---------------------------------------------------------------------------------------------
# Run arguments: hyper-parameters + locations


class SFTArgs(SFTHyperparameters, RunLocations):
    """Hyper-parameters and locations of one SFT run."""


class EmbeddingArgs(EmbeddingHyperparameters, RunLocations):
    """Hyper-parameters and locations of one embedding fine-tuning run."""


class RerankerArgs(RerankerHyperparameters, RunLocations):
    """Hyper-parameters and locations of one reranker training run."""


EncoderArgs = EmbeddingArgs | RerankerArgs
