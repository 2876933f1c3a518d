"""Per-key limits: requests per minute and concurrent generations ("streams") per API key.

A key's own limits are stored with it (``domainrag key create --rpm N --max-streams M``); a key
without them gets the server-wide defaults (``DOMAINRAG_KEY_RPM``, ``DOMAINRAG_KEY_MAX_STREAMS``, or
``serve --key-rpm/--key-max-streams``; 0 or unset: no limit). Over a limit the request gets 429 with
``Retry-After`` in OpenAI's error shape, so one client cannot starve the others. The counts live in
the server process (each worker process keeps its own).

Requests per minute are a token bucket per key holding a minute's worth: bursts up to N, refilled
at N/60 per second. Written by hand (about twenty lines) because the rate-limit libraries are not
among our dependencies and none of them also caps concurrent streams, which needs the same per-key
table anyway.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from domainrag.errors import DomainRagError
from domainrag.serving.http_errors import ApiError
from domainrag.serving.keys import ApiKey

Clock = Callable[[], float]


@dataclass
class _Bucket:
    rpm: int
    tokens: float
    updated: float

    def take(self, now: float) -> float:
        """Take one request: 0 when allowed, else the seconds until one is."""
        self.tokens = min(float(self.rpm), self.tokens + (now - self.updated) * self.rpm / 60.0)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) * 60.0 / self.rpm


def env_limit(name: str) -> int:
    """A non-negative integer from the environment (unset or empty: 0, no limit); else a clear error."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return 0
    if not raw.isdigit():
        raise DomainRagError(f"{name}={raw!r} is not a whole number >= 0",
                             hint=f"set {name} to e.g. 60, or 0 for no limit")
    return int(raw)


class KeyQuotas:
    """Per-key request rate and concurrent-stream counts (thread-safe: keys are checked in worker threads)."""

    def __init__(
        self, default_rpm: int = 0, default_streams: int = 0, clock: Clock = time.monotonic,
        on_refused: Callable[[str], None] | None = None,
    ) -> None:
        """``on_refused(reason)`` is told of each 429 (``rpm`` or ``streams``), e.g. to count it."""
        if default_rpm < 0 or default_streams < 0:
            raise DomainRagError("per-key limits must be >= 0 (0: no limit)")
        self.default_rpm, self.default_streams = default_rpm, default_streams
        self.clock = clock  # time.monotonic; tests may replace it
        self.on_refused = on_refused
        self._lock = threading.Lock()
        self._buckets: dict[str, _Bucket] = {}
        self._streams: dict[str, int] = {}

    @classmethod
    def from_env(
        cls, rpm: int | None = None, streams: int | None = None, on_refused: Callable[[str], None] | None = None
    ) -> KeyQuotas:
        """Explicit values, else ``DOMAINRAG_KEY_RPM`` / ``DOMAINRAG_KEY_MAX_STREAMS``, else no limit."""
        return cls(env_limit("DOMAINRAG_KEY_RPM") if rpm is None else rpm,
                   env_limit("DOMAINRAG_KEY_MAX_STREAMS") if streams is None else streams, on_refused=on_refused)

    def rpm(self, key: ApiKey) -> int:
        return self.default_rpm if key.rpm is None else key.rpm

    def max_streams(self, key: ApiKey) -> int:
        return self.default_streams if key.max_streams is None else key.max_streams

    def check_rate(self, key: ApiKey) -> None:
        """Count one request of ``key``; 429 (``rate_limit_exceeded``) when over its requests per minute."""
        rpm = self.rpm(key)
        if rpm <= 0:
            return
        now = self.clock()
        with self._lock:
            bucket = self._buckets.get(key.id)
            if bucket is None or bucket.rpm != rpm:  # a changed limit starts a full bucket
                bucket = self._buckets[key.id] = _Bucket(rpm, float(rpm), now)
            wait = bucket.take(now)
        if wait > 0:
            self._refused("rpm")
            raise ApiError(
                429, f"rate limit reached for this API key: {rpm} requests per minute; retry in {math.ceil(wait)} s",
                type="requests", code="rate_limit_exceeded",
                headers={"Retry-After": str(max(1, math.ceil(wait))), "x-ratelimit-limit-requests": str(rpm),
                         "x-ratelimit-remaining-requests": "0"},
            )

    def open_stream(self, key: ApiKey) -> Callable[[], None]:
        """Hold one of ``key``'s concurrent streams; returns its release (safe to call twice), or 429."""
        limit = self.max_streams(key)
        with self._lock:
            held = self._streams.get(key.id, 0)
            if 0 < limit <= held:
                self._refused("streams")
                raise ApiError(
                    429, f"this API key already has {held} generation(s) running, its limit; retry when one ends",
                    type="requests", code="concurrency_limit_exceeded", headers={"Retry-After": "1"},
                )
            self._streams[key.id] = held + 1
        released = False

        def release() -> None:
            nonlocal released
            with self._lock:
                if released:
                    return
                released = True
                left = self._streams.get(key.id, 1) - 1
                if left > 0:
                    self._streams[key.id] = left
                else:
                    self._streams.pop(key.id, None)

        return release

    def _refused(self, reason: str) -> None:
        if self.on_refused is not None:
            self.on_refused(reason)

    def streams(self, key_id: str) -> int:
        """Generations ``key_id`` holds now."""
        with self._lock:
            return self._streams.get(key_id, 0)
