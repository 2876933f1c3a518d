"""Child expansion: a retrieved parent (a table, a section) pulls in the chunks it lists as children."""

from __future__ import annotations

from typing import Any

import pytest

from domainrag.retrieval.retriever import RetrievalConfig, Retriever

TEXTS = {
    "table": "Revenue | 2019 | 2018\nAmericas | 1,200 | 1,100\nEurope | 800 | 750",
    "caption": "Net sales by geography consist of the following (in millions):",  # no word of the query
    "note": "Growth came mostly from new customers.",
    "other": "Revenue recognition policies are described in note 2; Americas revenue is recognised on delivery.",
    "filler": "The board met four times during the year.",
}
CHILDREN = {"table": ["caption", "note"]}


@pytest.fixture
def kb(make_store: Any, fixed_embedder: Any) -> tuple[Any, Any]:
    """(store, constant embedder): the dense order of the children is fixed by their stored vectors."""
    return make_store("kb", TEXTS, {k: {"children": v} for k, v in CHILDREN.items()}), fixed_embedder


def run(kb: tuple[Any, Any], query: str, mode: str, expand: int, top_k: int = 5) -> list[str]:
    cfg = RetrievalConfig(index="kb", mode=mode, top_k=top_k, expand_children=expand)  # type: ignore[arg-type]
    store, embedder = kb
    return [h.doc_id for h in Retriever(store, embedder, cfg).run(query)]


def test_a_parent_in_the_top_n_pulls_its_children_in_after_it(kb: tuple[Any, Any]) -> None:
    query = "Americas revenue 2019"
    plain = run(kb, query, "bm25", 0)
    assert "caption" not in plain and plain[0] in {"table", "other"}  # BM25 alone never finds the caption

    hybrid = run(kb, query, "hybrid", 0)
    expanded = run(kb, query, "hybrid", 2)
    t = expanded.index("table")
    assert set(expanded[t + 1 : t + 3]) == {"caption", "note"}  # right after their parent, fetched densely
    assert len(expanded) == len(set(expanded))  # a child already in the list moves up, never twice
    rest = [d for d in hybrid if d not in {"caption", "note"}]
    assert [d for d in expanded if d not in {"caption", "note"}] == rest[: len(expanded) - 2]  # others keep order

    cfg = RetrievalConfig(index="kb", mode="hybrid", top_k=5, expand_children=2)
    hits = Retriever(*kb, cfg).run(query)
    parent_rank = next(i for i, h in enumerate(hits, start=1) if h.doc_id == "table")
    assert {h.ranks.get("parent") for h in hits if h.doc_id in {"caption", "note"}} == {parent_rank}


def test_only_parents_among_the_top_n_are_expanded(kb: tuple[Any, Any]) -> None:
    query = "Revenue recognition policies note Americas delivery"  # "other" ranks above the table
    hits = run(kb, query, "bm25", 1)
    assert hits[0] == "other" and "caption" not in hits  # the table is not the first hit: nothing expands
    # BM25 fetches children with the query: only those sharing a word with it come along (here none)
    wide = run(kb, query, "bm25", 5)
    assert "table" in wide and "caption" not in wide and "note" not in wide
    assert run(kb, "Americas Europe revenue 2019 2018 customers", "bm25", 1)[:2] == ["table", "note"]


class CountingStore:
    """Wraps a real store and counts the searches the retriever sends it."""

    def __init__(self, store: Any) -> None:
        self.store, self.calls = store, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def dense_search(self, *args: Any) -> Any:
        self.calls += 1
        return self.store.dense_search(*args)


def test_all_parents_are_expanded_with_one_store_query(make_store: Any, fixed_embedder: Any) -> None:
    texts = {**TEXTS, "table2": "Revenue | 2020 | 2019\nAmericas | 1,300 | 1,200", "footnote": "Restated."}
    children = {"table": ["caption", "note"], "table2": ["footnote", "caption"]}  # both list the caption
    store = CountingStore(make_store("two", texts, {k: {"children": v} for k, v in children.items()}))
    cfg = RetrievalConfig(index="two", mode="dense", top_k=len(texts), expand_children=len(texts))
    plain = [h.doc_id for h in Retriever(store, fixed_embedder, cfg.model_copy(update={"expand_children": 0})).run("q")]
    store.calls = 0
    hits = Retriever(store, fixed_embedder, cfg).run("Americas revenue")
    assert store.calls == 2  # the query's own search, then one for every parent's children together
    order = [h.doc_id for h in hits]
    first, second = sorted(("table", "table2"), key=plain.index)
    owned = {first: children[first], second: [c for c in children[second] if c not in children[first]]}
    moved = 0
    for parent, kids in owned.items():  # each parent is followed by its own children that ranked below it
        below = {c for c in kids if plain.index(c) > plain.index(parent)}
        at = order.index(parent)
        assert set(order[at + 1 : at + 1 + len(below)]) == below
        assert all(h.ranks["parent"] == plain.index(parent) + 1 for h in hits if h.doc_id in below)
        moved += len(below)
    assert moved >= 1  # the seeded vectors leave at least one child below its parent
    assert len(order) == len(set(order))


def test_children_keep_the_query_doc_id_filter(kb: tuple[Any, Any]) -> None:
    cfg = RetrievalConfig(index="kb", mode="dense", top_k=5, expand_children=2)
    hits = Retriever(*kb, cfg).run("Americas revenue", filters={"doc_id": ["table", "caption"]})
    assert sorted(h.doc_id for h in hits) == ["caption", "table"]  # "note" is a child, but outside the filter
