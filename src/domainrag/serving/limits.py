"""Bounded generation capacity: the :class:`Limiter` pool and the one FastAPI dependency that holds a slot.

Every generation (an app completion, a chat completion, an embeddings batch) takes one slot of a pool
of ``DOMAINRAG_MAX_CONCURRENT`` (default 64). A request that waits longer than ``DOMAINRAG_QUEUE_TIMEOUT``
seconds (default 5) gets 503 with ``Retry-After``. Routes take a :data:`SlotDep` and call
``await slot.acquire()`` once their cheap checks passed (so a bad request never queues); the dependency
frees the slot when the response is over, streamed or not, however it ended (done, error, disconnect).
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request

from domainrag.serving.http_errors import ApiError

DEFAULT_MAX_CONCURRENT = 64  # the transformers backend decodes up to 64 requests together (continuous batching)
DEFAULT_QUEUE_TIMEOUT_S = 5.0


class Slot:
    """One held unit of generation capacity; releasing twice is harmless."""

    def __init__(self, sem: threading.BoundedSemaphore) -> None:
        self._sem: threading.BoundedSemaphore | None = sem

    def release(self) -> None:
        sem, self._sem = self._sem, None
        if sem is not None:
            sem.release()


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

    @classmethod
    def from_env(cls, limit: int | None = None, wait_s: float | None = None) -> Limiter:
        """Explicit values, else ``DOMAINRAG_MAX_CONCURRENT`` / ``DOMAINRAG_QUEUE_TIMEOUT``, else the defaults."""
        limit = limit or int(os.environ.get("DOMAINRAG_MAX_CONCURRENT", DEFAULT_MAX_CONCURRENT))
        if wait_s is None:
            wait_s = float(os.environ.get("DOMAINRAG_QUEUE_TIMEOUT", DEFAULT_QUEUE_TIMEOUT_S))
        return cls(limit, wait_s)

    def try_acquire(self) -> Slot | None:
        return Slot(self._sem) if self._sem.acquire(blocking=False) else None

    async def acquire(self) -> Slot:
        deadline = time.monotonic() + self.wait_s
        while (slot := self.try_acquire()) is None:
            if time.monotonic() >= deadline:
                raise ApiError(
                    503, f"server is at capacity ({self.limit} concurrent generations); retry shortly",
                    type="server_error", code="server_overloaded",
                    headers={"Retry-After": str(max(1, math.ceil(self.wait_s)))},
                )
            await asyncio.sleep(0.02)
        return slot


class GenerationSlot:
    """A request's claim on the pool: taken by :meth:`acquire`, given back by the dependency that made it."""

    def __init__(self, limiter: Limiter) -> None:
        self._limiter = limiter
        self._slot: Slot | None = None

    async def acquire(self) -> None:
        """Wait for a slot (503 after the queue timeout); a second call keeps the one already held."""
        if self._slot is None:
            self._slot = await self._limiter.acquire()

    def release(self) -> None:
        if self._slot is not None:
            self._slot.release()


async def generation_slot(request: Request) -> AsyncIterator[GenerationSlot]:
    """The request's :class:`GenerationSlot`, released after the response has been sent (or has failed).

    FastAPI runs the code after ``yield`` once the response, a streamed one included, is over.
    """
    claim = GenerationSlot(request.app.state.limiter)
    try:
        yield claim
    finally:
        claim.release()


SlotDep = Annotated[GenerationSlot, Depends(generation_slot)]
