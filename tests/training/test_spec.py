"""Job specs: the discriminated union, parsing plain dicts, and the catalogue record."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from domainrag.errors import DomainRagError, StorageError
from domainrag.training.spec import (
    EmbeddingJobSpec,
    JobRecord,
    RerankerJobSpec,
    SFTJobSpec,
    UncheckedJobSpec,
    parse_job_spec,
)

BASE = {"name": "j", "base_model": "all-minilm-l6-v2", "dataset": "d.jsonl"}


def test_algorithm_picks_the_spec_and_its_hyperparameters() -> None:
    spec = parse_job_spec({**BASE, "algorithm": "reranker", "hyperparameters": {"loss": "bce"}})
    assert isinstance(spec, RerankerJobSpec) and spec.hyperparameters.loss == "bce"
    assert spec.hyperparameters.batch_size == 16  # the reranker's default, not the embedding one
    assert isinstance(parse_job_spec({**BASE, "algorithm": "sft"}), SFTJobSpec)
    with pytest.raises(DomainRagError, match="unknown algorithm 'dpo'") as err:
        parse_job_spec({**BASE, "algorithm": "dpo"})
    assert "sft, embedding, reranker" in str(err.value.hint)


def test_parse_errors_name_the_field() -> None:
    with pytest.raises(DomainRagError, match=r"unknown embedding hyper-parameter\(s\): lora_r"):
        parse_job_spec({**BASE, "algorithm": "embedding", "hyperparameters": {"lora_r": 8}})
    with pytest.raises(DomainRagError, match="job spec field 'name'"):
        parse_job_spec({**BASE, "name": "bad name!", "algorithm": "sft"})
    with pytest.raises(DomainRagError, match=r"job spec field 'launch\.num_processes'"):
        parse_job_spec({**BASE, "algorithm": "sft", "launch": {"num_processes": 0}})
    with pytest.raises(DomainRagError, match="'hyperparameters' must be a mapping"):
        parse_job_spec({**BASE, "algorithm": "sft", "hyperparameters": [1]})
    with pytest.raises(StorageError, match="unsupported storage scheme"):
        parse_job_spec({**BASE, "algorithm": "sft", "dataset": "ftp://host/x"})


def test_stored_spec_keeps_only_the_given_hyperparameters_and_round_trips() -> None:
    spec = EmbeddingJobSpec(**BASE, hyperparameters={"epochs": 2, "loss": "cached_mnrl"})
    stored = spec.model_dump(mode="json")
    assert stored["hyperparameters"] == {"epochs": 2, "loss": "cached_mnrl"} and stored["algorithm"] == "embedding"
    assert parse_job_spec(stored) == spec
    with pytest.raises(ValidationError):  # the typed constructors validate like pydantic models do
        SFTJobSpec(**{**BASE, "name": ""})


def test_record_reads_stored_json_and_writes_it_back_unchanged() -> None:
    stored = {
        "name": "j-1",
        "spec": {**BASE, "algorithm": "embedding", "hyperparameters": {"epochs": 2}, "output": None, "launch": None},
        "state": "succeeded",
        "prefix": "jobs/j-1",
        "uri": "file:///lake/jobs/j-1",
        "error": None,
        "metrics": {"dimension": 384},
        "artifact_key": "jobs/j-1/output",
        "created_at": 1.0,
        "future_field": "kept",
    }
    record = JobRecord.model_validate(stored)
    assert record.spec.algorithm == "embedding" and record.terminal and record.metrics == {"dimension": 384}
    assert record.to_dict() == stored
    assert isinstance(record.job_spec(), EmbeddingJobSpec)


def test_an_old_record_whose_spec_no_longer_validates_still_loads() -> None:
    old = {"name": "j-2", "state": "failed", "prefix": "p", "uri": "u",
           "spec": {**BASE, "algorithm": "embedding", "hyperparameters": {"no_such_option": 1}}}
    record = JobRecord.model_validate(old)
    assert isinstance(record.spec, UncheckedJobSpec) and record.spec.algorithm == "embedding"
    assert record.to_dict() == old
    with pytest.raises(DomainRagError, match="no_such_option"):  # listed, but not resumable
        record.job_spec()
