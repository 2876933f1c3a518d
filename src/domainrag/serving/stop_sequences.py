"""OpenAI's ``stop``: a completion ends right before the first stop sequence, streamed or not.

One helper for every backend and every path (:class:`StopAt`): it wraps a stream of text pieces, passes
text on as soon as it cannot be the start of a stop sequence, holds back the few characters that might
be, and on a match yields the text before it, closes the model's stream (the backend stops generating)
and records ``hit``. Nothing past a stop sequence is ever yielded, however the model split it into tokens.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence


def _held_back(text: str, stops: Sequence[str]) -> int:
    """Length of the longest end of ``text`` that is the start of a stop sequence (text that must wait)."""
    longest = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:k]):
                longest = k
                break
    return longest


def _first_stop(text: str, stops: Sequence[str]) -> int | None:
    """Where the earliest stop sequence in ``text`` begins, or None."""
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(found) if found else None


class StopAt(Iterator[str]):
    """The pieces of ``pieces`` up to (not including) the first of ``stops``; ``hit`` once one was met.

    Closing it closes ``pieces`` (a backend then stops generating), as does meeting a stop sequence.
    """

    def __init__(self, pieces: Iterable[str], stops: Sequence[str] = ()) -> None:
        self._pieces = iter(pieces)
        self.stops = tuple(s for s in stops if s)
        self.hit = False
        self._held = ""
        self._done = False

    def __next__(self) -> str:
        while not self._done:
            try:
                piece = next(self._pieces)
            except StopIteration:
                self._done = True
                break
            if not self.stops:
                if piece:
                    return piece
                continue
            self._held += piece
            cut = _first_stop(self._held, self.stops)
            if cut is not None:
                self.hit, self._done = True, True
                text, self._held = self._held[:cut], ""
                self.close()
                if text:
                    return text
                break
            ready = len(self._held) - _held_back(self._held, self.stops)
            text, self._held = self._held[:ready], self._held[ready:]
            if text:
                return text
        if self._held:  # the stream ended on what only looked like the start of a stop sequence
            text, self._held = self._held, ""
            return text
        raise StopIteration

    def close(self) -> None:
        """Stop early: closes the underlying stream."""
        self._done, self._held = True, ""
        close = getattr(self._pieces, "close", None)
        if close is not None:
            close()

