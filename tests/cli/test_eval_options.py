"""The option mini-language of domainrag eval: errors name the option and the value as typed."""

from __future__ import annotations

import re

import pytest

from domainrag.cli._context import OptionError
from domainrag.cli.eval_options import ANSWER_FLAGS, RETRIEVAL_FLAGS, build_spec, parse_config, parse_fail_under
from domainrag.errors import DomainRagError
from domainrag.evaluation.spec import AnswerEvalSpec, AppConfigSpec, RerankSpec, RetrievalConfigSpec, RetrievalEvalSpec


def test_parse_config_forms() -> None:
    assert parse_config("bm25").model_dump() == {"kind": "search", "mode": "bm25", "embedding_model": None,
                                                 "index": None, "rerank": None, "label": "bm25"}
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


def test_parse_config_reranker_and_app_forms() -> None:
    spec = parse_config("hybrid+rerank:rr")
    assert isinstance(spec, RetrievalConfigSpec) and spec.rerank == RerankSpec(model="rr")
    assert (spec.mode, spec.rerank.fusion, spec.rerank.top_n, spec.text) == ("hybrid", "replace", 20,
                                                                           "hybrid+rerank:rr")
    full = parse_config("dense:m@idx+Rerank:my-rr, fusion=rrf ,top_n=10,retrieval_weight=0.5")
    assert isinstance(full, RetrievalConfigSpec) and (full.embedding_model, full.index) == ("m", "idx")
    assert full.rerank == RerankSpec(model="my-rr", fusion="rrf", top_n=10, retrieval_weight=0.5)
    # the default label (no label given) spells out only the settings that differ from the defaults
    unlabelled = full.model_copy(update={"label": None})
    assert unlabelled.text == "dense:m@idx+rerank:my-rr,fusion=rrf,top_n=10,retrieval_weight=0.5"
    app = parse_config(" app:docs-v2 ")
    assert isinstance(app, AppConfigSpec) and (app.app, app.text) == ("docs-v2", "app:docs-v2")
    spec = RetrievalEvalSpec(configs=[app, {"app": "other"}, {"mode": "bm25", "index": "i"}], index="kb")
    assert [type(c).__name__ for c in spec.configs] == ["AppConfigSpec", "AppConfigSpec", "RetrievalConfigSpec"]


@pytest.mark.parametrize(("text", "message"), [
    ("hybrid+rerank:", "empty reranker name after 'rerank:'"),
    ("hybrid+boost:x", "unknown stage '+boost:x'"),
    ("hybrid+rerank:rr+rerank:x", "one '+rerank:' stage at most"),
    ("hybrid+rerank:rr,fusion=max", "reranker fusion 'max': Input should be 'replace' or 'rrf'"),
    ("hybrid+rerank:rr,top_n=0", "reranker top_n '0': Input should be greater than or equal to 1"),
    ("hybrid+rerank:rr,top_n=many", "reranker top_n 'many'"),
    ("hybrid+rerank:rr,retrieval_weight=-1", "reranker retrieval_weight '-1'"),
    ("hybrid+rerank:rr,depth=3", "reranker setting 'depth=3' is not KEY=VALUE with KEY one of fusion, top_n"),
    ("hybrid+rerank:rr,rrf", "reranker setting 'rrf' is not KEY=VALUE"),
    ("sparse+rerank:rr", "unknown mode 'sparse'"),
    ("app:", "empty app name after 'app:'"),
])
def test_parse_config_reranker_and_app_errors(text: str, message: str) -> None:
    with pytest.raises(OptionError, match=f"^--config '{re.escape(text)}': {re.escape(message)}") as exc:
        parse_config(text)
    assert "+rerank:RERANKER" in (exc.value.hint or "") and "app:NAME" in (exc.value.hint or "")


def test_index_is_needed_unless_every_config_is_an_app() -> None:
    assert build_spec(RetrievalEvalSpec, RETRIEVAL_FLAGS, configs=[parse_config("app:a")]).index is None
    with pytest.raises(DomainRagError, match=r"^--index: .*needed by config 'hybrid\+rerank:rr'"):
        build_spec(RetrievalEvalSpec, RETRIEVAL_FLAGS,
                   configs=[parse_config("app:a"), parse_config("hybrid+rerank:rr")])


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
    with pytest.raises(DomainRagError, match=r"^--concurrency: "):
        build_spec(AnswerEvalSpec, ANSWER_FLAGS, apps=["a"], concurrency=0)
    assert build_spec(AnswerEvalSpec, ANSWER_FLAGS, apps=["a"]).concurrency >= 1
