"""The option mini-language of domainrag eval, turned into evaluation specifications.

--config MODE[:EMBEDDING_MODEL][@INDEX]:

* bm25 / dense / hybrid: the --index index with its own embedding model;
* dense:M: embedding model M on its own index, named <index>__<m> unless @INDEX names one
  (built by --ingest when missing);
* hybrid@other_index: an existing index, with whatever model it was built with.

--fail-under METRIC=MIN: the run fails when a configuration scores below MIN.

Errors (usage errors, exit status 2) name the option and the value as typed; field names of the
specifications are mapped back to the options that set them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from domainrag.cli._context import OptionError
from domainrag.evaluation.spec import RetrievalConfigSpec

M = TypeVar("M", bound=BaseModel)

RETRIEVAL_FLAGS = {"index": "--index", "configs": "--config", "ingest": "--ingest",
                   "embedding_model": "--embedding-model", "store": "--store", "metrics": "--metric",
                   "depth": "--depth", "max_words": "--max-words", "overlap_words": "--overlap-words",
                   "limit": "--limit"}
ANSWER_FLAGS = {"apps": "--app", "no_retrieval": "--no-retrieval", "judge": "--judge-model", "limit": "--limit",
                "judge.model": "--judge-model", "judge.url": "--judge-url", "judge.threshold": "--judge-threshold",
                "compare_gate": "--compare-gate", "withhold_gold": "--withhold-gold"}


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


def parse_config(text: str) -> RetrievalConfigSpec:
    """One --config value: MODE[:EMBEDDING_MODEL][@INDEX]."""
    raw = text.strip()
    rest, at, index = raw.rpartition("@") if "@" in raw else (raw, "", "")
    mode, colon, model = rest.partition(":")
    if colon and not model.strip():
        raise OptionError(f"--config '{text}': empty embedding model after ':'")
    if at and not index.strip():
        raise OptionError(f"--config '{text}': empty index name after '@'")
    try:
        return RetrievalConfigSpec(mode=mode, embedding_model=model.strip() or None, index=index.strip() or None,
                                   label=raw)
    except ValidationError as exc:
        raise OptionError(f"--config '{text}': {_first_error(exc)[1]}",
                             hint="use MODE[:EMBEDDING_MODEL][@INDEX] with MODE one of bm25, dense, hybrid") from exc


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
