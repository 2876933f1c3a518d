"""What to train and what happened to it: the job spec and the job's catalogue record.

:data:`JobSpec` is a discriminated union on ``algorithm``: :class:`SFTJobSpec`,
:class:`EmbeddingJobSpec` and :class:`RerankerJobSpec`, each with its own typed hyper-parameters
(:mod:`domainrag.training.hyperparameters`). Callers holding a plain dict (the CLI, stored
catalogue records) use :func:`parse_job_spec`, which turns any problem into a
:class:`DomainRagError` that names the field. :class:`JobRecord` is the catalogue record of a job;
its stored JSON is the same as the plain dicts earlier versions wrote.

States: queued → running → succeeded | failed | cancelled.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_serializer,
    field_validator,
)

from domainrag.errors import DomainRagError
from domainrag.storage.lake import split_scheme
from domainrag.training import inputs
from domainrag.training.hyperparameters import (
    EmbeddingHyperparameters,
    Hyperparameters,
    RerankerHyperparameters,
    SFTHyperparameters,
)
from domainrag.training.launch import LaunchConfig

Algorithm = Literal["sft", "embedding", "reranker"]
ALGORITHMS: tuple[str, ...] = get_args(Algorithm)
JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL: tuple[str, ...] = ("succeeded", "failed", "cancelled")


class _JobSpecBase(BaseModel):
    """Fields every job has; validated before anything runs."""

    model_config = ConfigDict(extra="forbid")
    MODEL_KIND: ClassVar[str] = "llm"  # zoo kind of the base model this algorithm starts from

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    base_model: str = Field(description="zoo short name, local model folder or hub id")
    dataset: str = Field(description="local path or URL (file://, s3://, oss://) of the training data")
    output: str | None = Field(None, description="extra URL to copy the trained artifact to")
    launch: LaunchConfig | None = Field(None, description="processes/devices/DeepSpeed/FSDP; None = one process")

    @field_validator("dataset", "output")
    @classmethod
    def _scheme(cls, value: str | None) -> str | None:
        if value is not None:
            split_scheme(value)
        return value

    @field_serializer("hyperparameters", check_fields=False)
    def _given_only(self, value: Hyperparameters) -> dict[str, Any]:
        """Only the hyper-parameters the user set (the stored format; defaults may change)."""
        return value.model_dump(mode="json", exclude_unset=True)

    def check_base_model(self) -> None:
        """A zoo model of the right kind, or an existing folder / hub id; a local folder of the right kind."""
        inputs.check_model_kind(self.base_model, self.MODEL_KIND, self.algorithm)  # type: ignore[attr-defined]

    def check_corpus_dataset(self) -> bool:
        """True when the dataset is a local document corpus (validated now); False otherwise."""
        return False

    def check_dataset(self) -> None:
        """Parse a local dataset now so format errors surface before the job starts."""
        inputs.check_dataset(self.dataset, chat=False)


class SFTJobSpec(_JobSpecBase):
    """LoRA fine-tuning of a chat LLM on conversations."""

    algorithm: Literal["sft"] = "sft"
    hyperparameters: SFTHyperparameters = Field(default_factory=SFTHyperparameters)

    def check_base_model(self) -> None:
        super().check_base_model()
        inputs.check_chat_model(self.base_model)

    def check_dataset(self) -> None:
        inputs.check_dataset(self.dataset, chat=True)


class _EncoderJobSpec(_JobSpecBase):
    MODEL_KIND: ClassVar[str] = "embedding"  # a reranker starts from an encoder too

    def check_base_model(self) -> None:
        super().check_base_model()
        inputs.check_encoder(self.base_model)

    def check_corpus_dataset(self) -> bool:
        return inputs.check_corpus(self.dataset, self.hyperparameters.synthetic_queries)  # type: ignore[attr-defined]


class EmbeddingJobSpec(_EncoderJobSpec):
    """Fine-tuning of a sentence-transformers bi-encoder on pairs (or a document corpus)."""

    algorithm: Literal["embedding"] = "embedding"
    hyperparameters: EmbeddingHyperparameters = Field(default_factory=EmbeddingHyperparameters)


class RerankerJobSpec(_EncoderJobSpec):
    """Training of a cross-encoder reranker on pairs (or a document corpus)."""

    algorithm: Literal["reranker"] = "reranker"
    hyperparameters: RerankerHyperparameters = Field(default_factory=RerankerHyperparameters)


JobSpec = Annotated[SFTJobSpec | EmbeddingJobSpec | RerankerJobSpec, Field(discriminator="algorithm")]
_SPEC: TypeAdapter[SFTJobSpec | EmbeddingJobSpec | RerankerJobSpec] = TypeAdapter(JobSpec)
_HYPERPARAMETERS: dict[str, type[Hyperparameters]] = {
    "sft": SFTHyperparameters,
    "embedding": EmbeddingHyperparameters,
    "reranker": RerankerHyperparameters,
}


def parse_job_spec(data: Mapping[str, Any]) -> SFTJobSpec | EmbeddingJobSpec | RerankerJobSpec:
    """A typed job spec from a plain dict; any problem raises a DomainRagError naming the field."""
    algorithm = data.get("algorithm")
    if algorithm not in ALGORITHMS:
        raise DomainRagError(f"unknown algorithm {algorithm!r}", hint=f"use one of: {', '.join(ALGORITHMS)}")
    hp = data.get("hyperparameters") or {}
    if not isinstance(hp, Mapping | Hyperparameters):
        raise DomainRagError(
            f"job spec field 'hyperparameters' must be a mapping of names to values, got {hp!r}",
            hint="e.g. --hp epochs=2 --hp learning_rate=5e-5",
        )
    model = _HYPERPARAMETERS[str(algorithm)]
    hyper = hp if isinstance(hp, Hyperparameters) else model(**hp)  # a DomainRagError naming the field
    try:
        return _SPEC.validate_python({**data, "hyperparameters": hyper})
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"][1:]) or "spec"
        raise DomainRagError(f"job spec field '{field}': {err['msg']}", hint=_SPEC_HINTS.get(field)) from None


_SPEC_HINTS = {
    "name": "use letters, digits, '.', '_' and '-' (starting with a letter or digit), at most 100 characters",
    "base_model": "give a zoo short name, a local model folder or a hub id",
    "dataset": "give a local path or a file://, s3:// or oss:// URL",
}


# ---------------------------------------------------------------------------------------------
# Catalogue record


class UncheckedJobSpec(BaseModel):
    """A stored spec that no longer validates (written by an older version): listed, not resumable."""

    model_config = ConfigDict(extra="allow")

    name: str
    algorithm: Algorithm
    base_model: str
    dataset: str
    output: str | None = None
    hyperparameters: dict[str, Any] = Field(default_factory=dict)


class JobRecord(BaseModel):
    """A job in the catalogue: its spec, state and, once done, metrics and artifact."""

    model_config = ConfigDict(extra="allow")

    name: str
    spec: JobSpec | UncheckedJobSpec
    state: JobState
    prefix: str = Field(description="the job's folder in the lake, jobs/<job-id>")
    uri: str = Field(description="URL of that folder")
    pid: int | None = Field(None, description="process (group leader) running the job")
    error: str | None = Field(None, description="why the job failed")
    metrics: dict[str, Any] | None = Field(None, description="what the training function reported")
    artifact_key: str | None = Field(None, description="lake key of the trained artifact")
    artifact_format: str | None = Field(None, description="lora-adapter | sentence-transformers | cross-encoder")
    started_at: float | None = None
    running_at: float | None = None
    finished_at: float | None = None
    created_at: float | None = None
    updated_at: float | None = None

    @field_validator("spec", mode="wrap")
    @classmethod
    def _old_spec(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except (ValidationError, DomainRagError):
            return UncheckedJobSpec.model_validate(value)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    def job_spec(self) -> SFTJobSpec | EmbeddingJobSpec | RerankerJobSpec:
        """The typed spec; a DomainRagError for a stored spec that no longer validates."""
        if isinstance(self.spec, UncheckedJobSpec):
            return parse_job_spec(self.spec.model_dump(mode="json"))
        return self.spec

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready record, with exactly the keys the catalogue holds."""
        return self.model_dump(mode="json", exclude_unset=True)
