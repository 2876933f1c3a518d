"""Bounded generation capacity: the :class:`Limiter` pool and the one FastAPI dependency that holds a slot.

Every generation (an app completion, a chat completion, an embeddings batch) takes one slot of a pool
of ``DOMAINRAG_MAX_CONCURRENT`` (default 64). A request that waits longer than ``DOMAINRAG_QUEUE_TIMEOUT``
seconds (default 5) gets 503 with ``Retry-After``. Routes take a :data:`SlotDep` and call
``await slot.acquire()`` once their cheap checks passed (so a bad request never queues); the dependency
frees the slot when the response is over, streamed or not, however it ended (done, error, disconnect).
A slot also holds one of its key's concurrent streams (:mod:`domainrag.serving.quotas`): a key at its
limit gets 429 at once, before it would queue for the pool. The pool counts its held slots and its
waiting requests for ``/metrics``.
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated

from fastapi import Depends, Request

from domainrag.serving.auth import KeyDep
from domainrag.serving.http_errors import ApiError
from domainrag.serving.keys import ApiKey
from domainrag.serving.quotas import KeyQuotas

DEFAULT_MAX_CONCURRENT = 64  # the transformers backend decodes up to 64 requests together (continuous batching)
DEFAULT_QUEUE_TIMEOUT_S = 5.0


class Slot:
    """One held unit of generation capacity; releasing twice is harmless."""

    def __init__(self, limiter: Limiter) -> None:
        self._limiter: Limiter | None = limiter

    def release(self) -> None:
        limiter, self._limiter = self._limiter, None
        if limiter is not None:
            limiter._release()


class Limiter:
    """Bounded pool of concurrent generations with a short queue wait.

    A thread semaphore polled from async code: independent of any event loop (tests may hold a
    slot from their own thread) and never parks a worker thread on a waiting request.
    """

    def __init__(self, limit: int, wait_s: float) -> None:
        if limit < 1:
            raise ValueError("max concurrent generations must be >= 1")
        self.limit, self.wait_s = limit, wait_s
        self._sem = threading.BoundedSemaphore(limit)
        self._count_lock = threading.Lock()
        self._in_use = self._waiting = 0

    @property
    def in_use(self) -> int:
        """Slots held now."""
        return self._in_use

    @property
    def waiting(self) -> int:
        """Requests waiting for a slot now (the queue depth)."""
        return self._waiting

    def _count(self, in_use: int = 0, waiting: int = 0) -> None:
        with self._count_lock:
            self._in_use += in_use
            self._waiting += waiting

    def _release(self) -> None:
        self._count(in_use=-1)
        self._sem.release()

    @classmethod
    def from_env(cls, limit: int | None = None, wait_s: float | None = None) -> Limiter:
        """Explicit values, else ``DOMAINRAG_MAX_CONCURRENT`` / ``DOMAINRAG_QUEUE_TIMEOUT``, else the defaults."""
        limit = limit or int(os.environ.get("DOMAINRAG_MAX_CONCURRENT", DEFAULT_MAX_CONCURRENT))
        if wait_s is None:
            wait_s = float(os.environ.get("DOMAINRAG_QUEUE_TIMEOUT", DEFAULT_QUEUE_TIMEOUT_S))
        return cls(limit, wait_s)

    def try_acquire(self) -> Slot | None:
        if not self._sem.acquire(blocking=False):
            return None
        self._count(in_use=1)
        return Slot(self)

    async def acquire(self) -> Slot:
        if (slot := self.try_acquire()) is not None:
            return slot
        deadline = time.monotonic() + self.wait_s
        self._count(waiting=1)
        try:
            while (slot := self.try_acquire()) is None:
                if time.monotonic() >= deadline:
                    raise ApiError(
                        503, f"server is at capacity ({self.limit} concurrent generations); retry shortly",
                        type="server_error", code="server_overloaded",
                        headers={"Retry-After": str(max(1, math.ceil(self.wait_s)))},
                    )
                await asyncio.sleep(0.02)
        finally:
            self._count(waiting=-1)
        return slot


class GenerationSlot:
    """A request's claim on the pool: taken by :meth:`acquire`, given back by the dependency that made it."""

    def __init__(self, limiter: Limiter, quotas: KeyQuotas | None = None, key: ApiKey | None = None) -> None:
        self._limiter, self._quotas, self._key = limiter, quotas, key
        self._slot: Slot | None = None
        self._stream: Callable[[], None] | None = None

    async def acquire(self) -> None:
        """Take one of the key's streams (429 at its limit), then wait for a slot (503 after the queue timeout);
        a second call keeps what is already held."""
        if self._slot is not None:
            return
        if self._stream is None and self._quotas is not None and self._key is not None:
            self._stream = self._quotas.open_stream(self._key)
        try:
            self._slot = await self._limiter.acquire()
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        if self._slot is not None:
            self._slot.release()
        if self._stream is not None:
            self._stream()


async def generation_slot(request: Request, key: KeyDep) -> AsyncIterator[GenerationSlot]:
    """The request's :class:`GenerationSlot`, released after the response has been sent (or has failed).

    FastAPI runs the code after ``yield`` once the response, a streamed one included, is over.
    """
    claim = GenerationSlot(request.app.state.limiter, request.app.state.quotas, key)
    try:
        yield claim
    finally:
        claim.release()


SlotDep = Annotated[GenerationSlot, Depends(generation_slot)]
