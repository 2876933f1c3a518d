"""StopAt: text ends before the first stop sequence, and nothing past it is ever yielded, however it is split."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from domainrag.serving.stop_sequences import StopAt


def _split_everywhere(text: str) -> list[list[str]]:
    """``text`` as one piece, as single characters, and split at every pair of positions."""
    splits = [[text], list(text)]
    for i in range(1, len(text)):
        for j in range(i, len(text)):
            splits.append([p for p in (text[:i], text[i:j], text[j:]) if p])
    return splits


@pytest.mark.parametrize(("text", "stops", "expected"), [
    ("The pump weighs 12 kg and more.", ["kg"], "The pump weighs 12 "),
    ("alpha beta gamma", ["gamma", "beta"], "alpha "),  # the earliest of several
    ("no stop here", ["xyz"], "no stop here"),
    ("ends on a partial st", ["stop"], "ends on a partial st"),  # a held-back prefix is flushed at the end
    ("aab", ["ab"], "a"),  # a stop that starts inside a held-back prefix
    ("stop at once", ["stop"], ""),
    ("line one\n\nline two", ["\n\n"], "line one"),
])
def test_text_ends_before_the_first_stop_however_it_is_split(text: str, stops: list[str], expected: str) -> None:
    for pieces in _split_everywhere(text):
        cut = StopAt(iter(pieces), stops)
        out = list(cut)
        assert "".join(out) == expected, pieces
        assert cut.hit == (expected != text), pieces
        assert all(out), "no empty pieces"
        for stop in stops:  # nothing past the stop was ever sent, not even a piece of it
            assert stop not in "".join(out)


def test_held_back_text_waits_only_while_it_could_start_a_stop() -> None:
    got: list[str] = []
    cut = StopAt(iter(["Hello k", "ind world", " k", "g!"]), ["kg"])
    got.append(next(cut))
    assert got == ["Hello "]  # "k" could start "kg": held back
    got.append(next(cut))
    assert got[-1] == "kind world"  # "ki" cannot: released with the rest
    assert list(cut) == [" "] and cut.hit  # " k" waits for "g!", which completes the stop



def test_meeting_a_stop_closes_the_model_stream() -> None:
    closed: list[bool] = []

    def model() -> Iterator[str]:
        try:
            yield from ["one ", "two ", "STOP", " three", " four"]
        finally:
            closed.append(True)

    cut = StopAt(model(), ["STOP"])
    assert list(cut) == ["one ", "two "] and cut.hit and closed == [True]
    plain = StopAt(iter(["a", "", "b"]))
    assert list(plain) == ["a", "b"] and not plain.hit


def test_closing_early_closes_the_model_stream() -> None:
    closed: list[bool] = []

    def model() -> Iterator[str]:
        try:
            while True:
                yield "token "
        finally:
            closed.append(True)

    cut = StopAt(model(), ["never"])
    assert next(cut) == "token "
    cut.close()
    assert closed == [True] and list(cut) == []
