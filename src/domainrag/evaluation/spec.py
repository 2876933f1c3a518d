"""What to evaluate, as typed specifications, and the pass/fail gate on a result's metrics.

A retrieval evaluation scores one or more configurations on a data set: a search (mode, embedding
model, index, optionally a reranker) or an app's whole retrieval pipeline; an answer evaluation asks
one or more RAG apps the questions. Validation errors name the field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationInfo, field_validator, model_validator

from domainrag.errors import DomainRagError
from domainrag.evaluation.answers import LOWER_IS_BETTER
from domainrag.evaluation.result import AnswerRun, RetrievalRun
from domainrag.evaluation.retrieval import DEFAULT_METRICS, validate_metric
from domainrag.retrieval.retriever import RerankFusion

Mode = Literal["bm25", "dense", "hybrid"]
MODES: tuple[str, ...] = ("dense", "bm25", "hybrid")


class RerankSpec(BaseModel):
    """A reranker stage after retrieval: a registered reranker (or cross-encoder folder) and how it is fused.

    The fields mirror the rerank_* fields of an app's retrieval config, so a measured setting can be
    copied into an app as it is.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(min_length=1, description="registered reranker model name, or a cross-encoder folder")
    fusion: RerankFusion = Field("replace", description="replace: reranker order; rrf: fused with retrieval order")
    top_n: int = Field(20, ge=1, le=200, description="top retrieved chunks the reranker rescores")
    retrieval_weight: float = Field(1.0, ge=0, description="rrf: weight of the retrieval order (reranker: 1)")

    @field_validator("model")
    @classmethod
    def _model_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("empty reranker model name")
        return value.strip()

    @property
    def text(self) -> str:
        """``rerank:MODEL`` plus the settings that differ from the defaults."""
        extra = [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                 for k, v in self.model_dump(exclude={"model"}).items() if v != type(self).model_fields[k].default]
        return f"rerank:{self.model}" + "".join(f",{e}" for e in extra)


class RetrievalConfigSpec(BaseModel):
    """One search configuration: a retrieval mode, optionally another embedding model, an existing index, a reranker.

    Without ``index``, a config whose embedding model differs from the evaluated index's gets its own
    index ``<index>__<model>``; with ``index``, that index is used with the model it was built with.
    """

    model_config = ConfigDict(frozen=True)

    kind: Literal["search"] = "search"
    mode: Mode
    embedding_model: str | None = None
    index: str | None = None
    rerank: RerankSpec | None = None
    label: str | None = Field(None, description="name shown in the report (default: MODE[:MODEL][@INDEX][+rerank:R])")

    @field_validator("mode", mode="before")
    @classmethod
    def _known_mode(cls, value: Any) -> Any:
        mode = str(value).strip().lower()
        if mode not in MODES:
            raise ValueError(f"unknown mode '{value}' (use bm25, dense or hybrid)")
        return mode

    @field_validator("embedding_model", "index")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty")
        return value.strip() if value is not None else None

    @model_validator(mode="after")
    def _bm25_has_no_model(self) -> RetrievalConfigSpec:
        if self.mode == "bm25" and self.embedding_model:
            raise ValueError("bm25 uses no embedding model")
        return self

    @property
    def text(self) -> str:
        if self.label:
            return self.label
        return (self.mode + (f":{self.embedding_model}" if self.embedding_model else "")
                + (f"@{self.index}" if self.index else "") + (f"+{self.rerank.text}" if self.rerank else ""))


class AppConfigSpec(BaseModel):
    """An app's whole retrieval pipeline (its index, mode, weights, filters, expansion and reranker), as it serves."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["app"] = "app"
    app: str = Field(min_length=1)
    label: str | None = Field(None, description="name shown in the report (default: app:NAME)")

    @field_validator("app")
    @classmethod
    def _app_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("empty app name")
        return value.strip()

    @property
    def text(self) -> str:
        return self.label or f"app:{self.app}"


def _config_kind(value: Any) -> str:
    """Tag of a config given as a dict (``kind`` may be left out: a dict with ``app`` is an app) or a model."""
    if isinstance(value, dict):
        return str(value.get("kind") or ("app" if "app" in value else "search"))
    return str(getattr(value, "kind", "search"))


ConfigSpec = Annotated[Annotated[RetrievalConfigSpec, Tag("search")] | Annotated[AppConfigSpec, Tag("app")],
                       Discriminator(_config_kind)]


DEFAULT_CONFIGS = (RetrievalConfigSpec(mode="bm25"), RetrievalConfigSpec(mode="dense"),
                   RetrievalConfigSpec(mode="hybrid"))


class RetrievalEvalSpec(BaseModel):
    """A retrieval evaluation of ``index`` (and the indexes its configs name) on one data set."""

    configs: list[ConfigSpec] = Field(default_factory=lambda: list(DEFAULT_CONFIGS), min_length=1)
    index: str | None = Field(None, validate_default=True, description="index to evaluate (created when ingest is "
                              "on and it is missing); needed unless every config is an app")
    ingest: bool = Field(False, description="create the indexes and ingest the data set's corpus first")
    embedding_model: str | None = Field(None, description="embedding model of `index` when ingest creates it")
    store: str | dict[str, Any] = Field("embedded", description="store type or config of indexes ingest creates")
    metrics: list[str] = Field(default_factory=lambda: list(DEFAULT_METRICS), min_length=1)
    depth: int | None = Field(None, ge=1, description="chunks fetched per query (default 2 x largest cut-off)")
    max_words: int = Field(120, gt=0, description="chunk size in words when ingesting")
    overlap_words: int = Field(20, ge=0, description="chunk overlap in words when ingesting")
    drill_hits: int = Field(5, ge=0, description="hits per query kept for the report's drill-down")
    limit: int | None = Field(None, ge=0, description="evaluate only the first N queries")

    @field_validator("metrics")
    @classmethod
    def _supported(cls, metrics: list[str]) -> list[str]:
        for m in metrics:
            validate_metric(m)  # ValueError naming the bad one
        return metrics

    @field_validator("index")
    @classmethod
    def _index_for_search_configs(cls, index: str | None, info: ValidationInfo) -> str | None:
        searches = [c.text for c in info.data.get("configs", []) if isinstance(c, RetrievalConfigSpec)]
        if index is not None and not index.strip():
            raise ValueError("must not be empty")
        if index is None and searches:
            raise ValueError(f"needed by config '{searches[0]}' (only app:NAME configs bring their own index)")
        return index.strip() if index is not None else None


class JudgeSpec(BaseModel):
    """The faithfulness judge: a catalogue LLM (or base model), or a model at an OpenAI-compatible URL."""

    model: str
    url: str | None = Field(None, description="OpenAI-compatible endpoint; key from $DOMAINRAG_JUDGE_API_KEY")
    threshold: float = Field(0.5, description="in-process judges: supported when P(yes) reaches this")


DEFAULT_CONCURRENCY = 8
"""Questions in flight at once in an answer evaluation: enough for continuous batching to pay off on a CPU
(benchmarks/README.md, "Without bf16")."""


class AnswerEvalSpec(BaseModel):
    """An answer evaluation: each app answers every question (and, with no_retrieval, its model alone)."""

    apps: list[str] = Field(min_length=1)
    no_retrieval: bool = Field(False, description="add a run per app: its model without retrieval")
    judge: JudgeSpec | None = None
    limit: int | None = Field(None, ge=0, description="ask only the first N questions")
    compare_gate: bool = Field(False, description="add a run per app with its answerability gate off")
    withhold_gold: int = Field(0, ge=0, description="also ask the first N answerable questions with their gold "
                               "documents withheld from the passages, as unanswerable ones")
    concurrency: int = Field(DEFAULT_CONCURRENCY, ge=1, le=256,
                             description="questions in flight at once (1: one after the other)")

    @field_validator("apps")
    @classmethod
    def _distinct(cls, apps: list[str]) -> list[str]:
        twice = sorted({a for a in apps if apps.count(a) > 1})
        if twice:
            raise ValueError(f"app named twice: {', '.join(twice)} (no_retrieval adds an app's run without "
                             "retrieval)")
        return apps


# -- gate -------------------------------------------------------------------------------------------
def validate_thresholds(thresholds: Mapping[str, float], allowed: Sequence[str]) -> dict[str, float]:
    """{metric: minimum} with metric names matched to the run's (case-insensitive); unknown ones are an error."""
    known = {m.lower(): m for m in allowed}
    out: dict[str, float] = {}
    for name, minimum in thresholds.items():
        key = name.strip().lower()
        if key not in known:
            raise DomainRagError(f"threshold on unknown metric '{name.strip()}'",
                                 hint="metrics of this run: " + ", ".join(allowed))
        if known[key] in LOWER_IS_BETTER:
            raise DomainRagError(f"thresholds are minimums, but lower {known[key]} is better")
        out[known[key]] = float(minimum)
    return out


def check_thresholds(runs: Sequence[RetrievalRun | AnswerRun], thresholds: Mapping[str, float]) -> list[str]:
    """One message per (run, metric) below its minimum; an unmeasured metric fails too (it proves nothing)."""
    failures = []
    for run in runs:
        for metric, minimum in thresholds.items():
            value = run.metrics.get(metric)
            if value is None:
                failures.append(f"{run.label}: {metric} not measured (required ≥ {minimum:g})")
            elif value < minimum:
                failures.append(f"{run.label}: {metric} = {value:.4f} < {minimum:g}")
    return failures
