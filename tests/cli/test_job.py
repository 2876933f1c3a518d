"""domainrag job: hyper-parameter options and the job specification they build."""

from __future__ import annotations

import pytest

from domainrag.cli.job import job_spec, parse_hp
from domainrag.errors import DomainRagError


def test_parse_hp_reads_json_values_else_strings() -> None:
    assert parse_hp(["epochs=2", "learning_rate=1e-4", "name=run=1", "flag=true", "tags=[1, 2]"]) == {
        "epochs": 2, "learning_rate": 1e-4, "name": "run=1", "flag": True, "tags": [1, 2]}
    with pytest.raises(DomainRagError, match="'epochs' is not key=value"):
        parse_hp(["epochs"])


def test_job_spec_builds_the_training_spec() -> None:
    spec = job_spec(name="j", algorithm="embedding", base_model="all-minilm-l6-v2", dataset="/data/pairs.jsonl",
                    hyperparameters={"epochs": 1})
    assert (spec.name, spec.algorithm, spec.base_model, spec.launch) == ("j", "embedding", "all-minilm-l6-v2", None)
    assert spec.hyperparameters.epochs == 1  # typed per algorithm
    with pytest.raises(DomainRagError, match="no_such_option"):
        job_spec(name="j", algorithm="embedding", base_model="all-minilm-l6-v2", dataset="/data/pairs.jsonl",
                 hyperparameters={"no_such_option": 1})
