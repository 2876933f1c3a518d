"""Typed hyper-parameters: strict values, closed names, errors that name the field and say what to do."""

from __future__ import annotations

from pathlib import Path

import pytest

from domainrag.errors import DomainRagError
from domainrag.training.hyperparameters import (
    EmbeddingArgs,
    EmbeddingHyperparameters,
    RerankerHyperparameters,
    SFTArgs,
    SFTHyperparameters,
)


def test_sft_hyperparameters_are_checked_before_training() -> None:
    assert SFTHyperparameters(packing=True, eval_every=5, early_stopping_patience=2).packing
    with pytest.raises(DomainRagError, match=r"unknown SFT hyper-parameter.*no_such") as err:
        SFTHyperparameters(no_such=1)
    assert "early_stopping_patience" in str(err.value)  # the hint lists the valid names
    with pytest.raises(DomainRagError, match="eval_every is not set"):
        SFTHyperparameters(early_stopping_patience=2)
    with pytest.raises(DomainRagError, match="eval_fraction is 0"):
        SFTHyperparameters(early_stopping_patience=2, eval_every=5, eval_fraction=0)
    with pytest.raises(DomainRagError, match="'batch_size' must be an integer"):
        SFTHyperparameters(batch_size="4")
    with pytest.raises(DomainRagError, match="'early_stopping_min_delta'"):
        SFTHyperparameters(early_stopping_min_delta=-0.1)
    with pytest.raises(DomainRagError, match=r"unknown SFT hyper-parameter.*base_model"):
        SFTHyperparameters(base_model="x")  # set by the job, not a hyper-parameter


@pytest.mark.parametrize(
    ("hp", "match"),
    [
        ({"loss": "triplet"}, "unknown loss"),
        ({"matryoshka_dims": [256, 256]}, "distinct positive"),
        ({"matryoshka_dims": "384"}, "distinct positive"),
        ({"matryoshka_dims": [0, 64]}, "distinct positive"),
        ({"synthetic_queries": "t5"}, "unknown mode"),
        ({"mini_batch_size": 0}, "positive integer"),
        ({"precision": "fp16"}, "unknown precision"),
        ({"epochs": True}, "'epochs' must be an integer"),  # a bool is not a count
        ({"no_such_option": 1}, r"unknown embedding hyper-parameter\(s\): no_such_option"),
    ],
)
def test_embedding_options_are_refused_with_the_field_named(hp: dict[str, object], match: str) -> None:
    with pytest.raises(DomainRagError, match=match) as err:
        EmbeddingHyperparameters(**hp)
    assert err.value.hint  # every refusal says what to do


def test_reranker_losses_are_not_the_embedding_ones() -> None:
    for hp, match in (
        ({"loss": "triplet"}, "unknown reranker loss"),
        ({"loss": "cached_mnrl"}, "unknown reranker loss"),
        ({"in_batch_negatives": 0}, "positive integer"),
    ):
        with pytest.raises(DomainRagError, match=match):
            RerankerHyperparameters(**hp)
    for loss in ("mnrl", "bce"):
        assert RerankerHyperparameters(loss=loss, in_batch_negatives=3).loss == loss


def test_defaults_differ_per_algorithm_and_a_float_option_takes_an_int() -> None:
    assert (EmbeddingHyperparameters().batch_size, RerankerHyperparameters().batch_size) == (32, 16)
    assert RerankerHyperparameters().hard_negatives == 3 and EmbeddingHyperparameters().hard_negatives == 0
    assert SFTHyperparameters(epochs=2, learning_rate=1).learning_rate == 1.0


def test_run_args_add_locations_and_keep_the_checks(tmp_path: Path) -> None:
    args = SFTArgs(base_model="m", dataset=str(tmp_path / "d.jsonl"), output_dir=tmp_path, max_steps=3)
    assert args.dataset == tmp_path / "d.jsonl" and args.checkpoint_dir is None and args.max_steps == 3
    assert args.model_dump(mode="json")["dataset"] == str(tmp_path / "d.jsonl")
    with pytest.raises(DomainRagError, match="unknown embedding hyper-parameter"):
        EmbeddingArgs(base_model="m", dataset=tmp_path, output_dir=tmp_path, lora_r=8)  # an SFT option
