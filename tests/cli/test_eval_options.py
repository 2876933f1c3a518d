"""The option mini-language of domainrag eval: errors name the option and the value as typed."""

from __future__ import annotations

import pytest

from domainrag.cli.eval_options import ANSWER_FLAGS, RETRIEVAL_FLAGS, build_spec, parse_config, parse_fail_under
from domainrag.errors import DomainRagError
from domainrag.evaluation.spec import AnswerEvalSpec, RetrievalEvalSpec


def test_parse_config_forms() -> None:
    assert parse_config("bm25").model_dump() == {"mode": "bm25", "embedding_model": None, "index": None,
                                                 "label": "bm25"}
    spec = parse_config(" Dense:BAAI/bge-small@other ")
    assert (spec.mode, spec.embedding_model, spec.index, spec.text) == ("dense", "BAAI/bge-small", "other",
                                                                        "Dense:BAAI/bge-small@other")
    assert parse_config("hybrid@idx").index == "idx"


@pytest.mark.parametrize(("text", "message"), [
    ("sparse", "--config 'sparse': unknown mode 'sparse'"),
    ("bm25:emb", "--config 'bm25:emb': bm25 uses no embedding model"),
    ("dense:", "empty embedding model"),
    ("dense@", "empty index name"),
])
def test_parse_config_errors(text: str, message: str) -> None:
    with pytest.raises(DomainRagError, match=message):
        parse_config(text)


def test_parse_fail_under() -> None:
    assert parse_fail_under(["ndcg@10=0.6", " MAP = 0"]) == {"ndcg@10": 0.6, "MAP": 0.0}
    with pytest.raises(DomainRagError, match="METRIC=VALUE"):
        parse_fail_under(["ndcg@10"])
    with pytest.raises(DomainRagError, match="'x' is not a number"):
        parse_fail_under(["ndcg@10=x"])


def test_build_spec_maps_fields_to_options() -> None:
    spec = build_spec(RetrievalEvalSpec, RETRIEVAL_FLAGS, index="docs", metrics=["map"])
    assert spec.metrics == ["map"] and [c.mode for c in spec.configs] == ["bm25", "dense", "hybrid"]
    with pytest.raises(DomainRagError, match=r"^--metric: unsupported metric 'bleu@3'"):
        build_spec(RetrievalEvalSpec, RETRIEVAL_FLAGS, index="docs", metrics=["bleu@3"])
    with pytest.raises(DomainRagError, match=r"^--max-words: "):
        build_spec(RetrievalEvalSpec, RETRIEVAL_FLAGS, index="docs", max_words=0)
    with pytest.raises(DomainRagError, match=r"^--app: app named twice: a"):
        build_spec(AnswerEvalSpec, ANSWER_FLAGS, apps=["a", "b", "a"])
