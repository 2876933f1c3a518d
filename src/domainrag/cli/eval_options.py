"""The option mini-language of domainrag eval, turned into evaluation specifications.

--config MODE[:EMBEDDING_MODEL][@INDEX][+rerank:RERANKER[,KEY=VALUE...]] or app:NAME:

* bm25 / dense / hybrid: the --index index with its own embedding model;
* dense:M: embedding model M on its own index, named <index>__<m> unless @INDEX names one
  (built by --ingest when missing);
* hybrid@other_index: an existing index, with whatever model it was built with;
* hybrid+rerank:R: the top chunks rescored by the registered reranker R; settings after commas:
  fusion=replace|rrf, top_n=N, retrieval_weight=W (as an app's rerank_* retrieval fields);
* app:NAME: the app's whole retrieval pipeline (index, mode, weights, filters, reranker) as it serves.

--fail-under METRIC=MIN: the run fails when a configuration scores below MIN.

Errors (usage errors, exit status 2) name the option and the value as typed; field names of the
specifications are mapped back to the options that set them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from domainrag.cli._context import OptionError
from domainrag.evaluation.spec import AppConfigSpec, RerankSpec, RetrievalConfigSpec

M = TypeVar("M", bound=BaseModel)

RETRIEVAL_FLAGS = {"index": "--index", "configs": "--config", "ingest": "--ingest",
                   "embedding_model": "--embedding-model", "store": "--store", "metrics": "--metric",
                   "depth": "--depth", "max_words": "--max-words", "overlap_words": "--overlap-words",
                   "limit": "--limit"}
ANSWER_FLAGS = {"apps": "--app", "no_retrieval": "--no-retrieval", "judge": "--judge-model", "limit": "--limit",
                "judge.model": "--judge-model", "judge.url": "--judge-url", "judge.threshold": "--judge-threshold",
                "compare_gate": "--compare-gate", "withhold_gold": "--withhold-gold",
                "concurrency": "--concurrency"}


def _first_error(exc: ValidationError) -> tuple[str, str]:
    """(dotted field, message) of a validation error; a validator's own message is kept as written."""
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"] if not isinstance(p, int))
    cause = (err.get("ctx") or {}).get("error")
    return field, str(cause) if cause is not None else err["msg"]


def build_spec(model: type[M], flags: Mapping[str, str], **values: Any) -> M:
    """``model`` from option values; a validation error names the option that set the field."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        field, message = _first_error(exc)
        raise OptionError(f"{flags.get(field, field)}: {message}") from exc


CONFIG_GRAMMAR = ("MODE[:EMBEDDING_MODEL][@INDEX][+rerank:RERANKER[,fusion=replace|rrf][,top_n=N]"
                  "[,retrieval_weight=W]] with MODE one of bm25, dense, hybrid; or app:NAME")
RERANK_KEYS = tuple(k for k in RerankSpec.model_fields if k != "model")


def parse_config(text: str) -> RetrievalConfigSpec | AppConfigSpec:
    """One --config value (see the module docstring); an error names the part of the value that is wrong."""
    raw = text.strip()

    def bad(problem: str, cause: Exception | None = None) -> OptionError:
        error = OptionError(f"--config '{text}': {problem}", hint=f"use {CONFIG_GRAMMAR}")
        error.__cause__ = cause
        return error

    if raw.lower().startswith("app:"):
        name = raw[4:].strip()
        if not name:
            raise bad("empty app name after 'app:'")
        return AppConfigSpec(app=name, label=raw)
    head, plus, stage = raw.partition("+")
    rerank = _parse_rerank(stage, bad) if plus else None
    rest, at, index = head.rpartition("@") if "@" in head else (head, "", "")
    mode, colon, model = rest.partition(":")
    if colon and not model.strip():
        raise bad("empty embedding model after ':'")
    if at and not index.strip():
        raise bad("empty index name after '@'")
    try:
        return RetrievalConfigSpec(mode=mode, embedding_model=model.strip() or None, index=index.strip() or None,
                                   rerank=rerank, label=raw)
    except ValidationError as exc:
        raise bad(_first_error(exc)[1], exc) from exc


def _parse_rerank(stage: str, bad: Any) -> RerankSpec:
    """The part after '+': rerank:MODEL[,KEY=VALUE...]."""
    kind, colon, body = stage.partition(":")
    if kind.strip().lower() != "rerank" or not colon:
        raise bad(f"unknown stage '+{stage}' (the stage after '+' is rerank:RERANKER)")
    if "+" in body:
        raise bad("one '+rerank:' stage at most")
    model, *settings = body.split(",")
    if not model.strip():
        raise bad("empty reranker name after 'rerank:'")
    values: dict[str, str] = {}
    for item in settings:
        key, eq, value = item.partition("=")
        key = key.strip().lower()
        if not eq or key not in RERANK_KEYS:
            raise bad(f"reranker setting '{item.strip()}' is not KEY=VALUE with KEY one of {', '.join(RERANK_KEYS)}")
        values[key] = value.strip()
    try:
        return RerankSpec(model=model, **values)  # type: ignore[arg-type]  # pydantic converts the strings
    except ValidationError as exc:
        field, message = _first_error(exc)
        raise bad(f"reranker {field} '{values.get(field, model)}': {message}", exc) from exc


def parse_fail_under(items: Sequence[str]) -> dict[str, float]:
    """["ndcg@10=0.6", ...] → {metric: minimum} (metric names are checked against the run later)."""
    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise OptionError(f"--fail-under '{item}' is not METRIC=VALUE", hint="e.g. --fail-under ndcg@10=0.6")
        try:
            out[name.strip()] = float(value)
        except ValueError as exc:
            raise OptionError(f"--fail-under '{item}': '{value}' is not a number") from exc
    return out
