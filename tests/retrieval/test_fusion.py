import pytest

from domainrag.index.base import SearchHit
from domainrag.retrieval.fusion import reciprocal_rank_fusion


def _hits(*ids: str) -> list[SearchHit]:
    return [SearchHit(i, f"doc-{i}", f"text {i}", 1.0 / (n + 1)) for n, i in enumerate(ids)]


def test_rrf_scores_and_ranks() -> None:
    fused = reciprocal_rank_fusion({"dense": _hits("a", "b", "c"), "bm25": _hits("c", "a")}, rank_constant=60)
    assert [h.chunk_id for h in fused] == ["a", "c", "b"]
    a = fused[0]
    assert a.score == pytest.approx(1 / 61 + 1 / 62)
    assert a.ranks == {"dense": 1, "bm25": 2}
    assert fused[2].ranks == {"dense": 2}


def test_rrf_weights_change_the_order() -> None:
    results = {"dense": _hits("a", "b"), "bm25": _hits("b", "a")}
    assert reciprocal_rank_fusion(results, {"dense": 2.0, "bm25": 1.0})[0].chunk_id == "a"
    assert reciprocal_rank_fusion(results, {"dense": 1.0, "bm25": 2.0})[0].chunk_id == "b"
    assert len(reciprocal_rank_fusion(results, k=1)) == 1
    with pytest.raises(ValueError):
        reciprocal_rank_fusion(results, rank_constant=-1)
