"""Continuous batching for the in-process transformers backend: one decode step for every running request.

Why our own step loop and not transformers' ``ContinuousBatchingManager`` (``generate_batch``): that manager
runs on CPU (SDPA or ``paged|eager`` attention; greedy answers equal ``generate``'s) but it picks greedy or
sampling once per manager (``do_sample``), drops ``RepetitionPenaltyLogitsProcessor`` ("isn't supported by CB.
Dropping it."; our default penalty is 1.1) and has no per-request seed or history-based penalties, so answers
would change; it also pads decode batches for CUDA graphs. This loop keeps every per-request setting exactly as
``generate`` applies it (:class:`~.sampling.RequestSampler`) and batches only the forward pass:

* A request is prefilled alone (no padding: the blocked bf16 attention keeps its speed), then its
  ``DynamicCache`` rows join the running batch, left-padded to the batch's length with a 0 in the mask.
* Each step runs one forward over the last token of every running request (``[B, 1]`` with the padding mask
  and per-request positions), then picks each request's next token with its own sampler.
* Requests join between steps (prefill up to ``prefill_budget`` prompt tokens per step, at least one) and
  leave at every step (end of text, ``max_new_tokens``, cancelled, or the consumer closed the stream); the
  padding columns no remaining row needs are dropped.
* The running batch's cache layers keep :data:`SPARE` free positions (``_spare_layer``): a decode step
  writes its keys in place, where ``DynamicCache``'s ``torch.cat`` copied the whole batch's cache every step.

``max_batch=1`` is the old behaviour (one request at a time), kept for comparisons (benchmarks).
"""

from __future__ import annotations

import atexit
import functools
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from domainrag.serving.backends.config import DEFAULT_MAX_BATCH, DEFAULT_PREFILL_BUDGET
from domainrag.serving.backends.sampling import RequestSampler
from domainrag.serving.generator import GenerationConfig

_END = object()
SPARE = 128  # free positions in the running cache; when they run out, the cache is copied once into a larger one


@dataclass(eq=False)
class _Request:
    ids: list[int]
    cfg: GenerationConfig
    cancel: threading.Event
    out: queue.Queue[Any] = field(default_factory=queue.Queue)
    generated: int = 0
    sampler: RequestSampler | None = None

    def finish(self, error: BaseException | None = None) -> None:
        if error is not None:
            self.out.put(error)
        self.out.put(_END)


class BatchRunner:
    """The worker thread that owns a model's forward passes and batches every request given to :meth:`submit`.

    ``lock`` is held around each forward, so other users of the model (a judge scoring with it) interleave.
    ``on_step`` (tests, metrics) is called with the batch size of every decode step.
    """

    def __init__(self, model: Any, eos_ids: set[int], lock: threading.Lock, *, max_batch: int = DEFAULT_MAX_BATCH,
                 prefill_budget: int = DEFAULT_PREFILL_BUDGET) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self.model, self.eos_ids, self.lock = model, eos_ids, lock
        self.max_batch, self.prefill_budget = max_batch, prefill_budget
        self.on_step: Callable[[int], None] | None = None
        self._waiting: queue.Queue[_Request] = queue.Queue()
        self._running: list[_Request] = []
        self._cache: Any = None
        self._mask: torch.Tensor | None = None  # [B, T]: 1 for a real position, 0 for left padding
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, daemon=True, name="domainrag-batch")
        self._thread.start()
        # The thread ends before interpreter teardown: a daemon thread parked in torch's runtime at exit
        # aborts the process ("terminate called without an active exception").
        atexit.register(self.close)

    def close(self, timeout: float = 10.0) -> None:
        """Stop the worker thread after its current step (requests still running are not finished)."""
        self._closed = True
        self._wake.set()
        self._thread.join(timeout)

    @property
    def active(self) -> int:
        """Requests in the running batch now."""
        return len(self._running)

    def submit(self, prompt_ids: list[int], cfg: GenerationConfig, cancel: threading.Event) -> Iterator[int]:
        """Queue a request; yields its tokens as they are picked. Closing the iterator cancels the request."""
        request = _Request(list(prompt_ids), cfg, cancel)
        self._waiting.put(request)
        self._wake.set()
        finished = False
        try:
            while (item := request.out.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                yield item
            finished = True
        finally:
            if not finished:
                cancel.set()
                self._wake.set()

    # ---- the worker thread ----

    def _loop(self) -> None:
        while not self._closed:
            if not self._running and self._waiting.empty():
                self._wake.wait()
                self._wake.clear()
                continue
            try:
                with torch.inference_mode():
                    self._admit()
                    if self._running:
                        self._step()
            except BaseException as exc:  # a failed forward fails the requests in it, never the thread
                for request in self._running:
                    request.finish(exc)
                self._running, self._cache, self._mask = [], None, None

    def _admit(self) -> None:
        budget = self.prefill_budget
        joining: list[tuple[_Request, Any]] = []
        while len(self._running) + len(joining) < self.max_batch and (budget > 0 or not (self._running or joining)):
            try:
                request = self._waiting.get_nowait()
            except queue.Empty:
                break
            if request.cancel.is_set():
                request.finish()
                continue
            try:
                cache = self._prefill(request)
            except Exception as exc:  # this prompt failed (too long, ...): only its request fails
                request.finish(exc)
            else:
                if cache is not None:  # None: it ended with its first token
                    joining.append((request, cache))
            budget -= len(request.ids)
        if joining:
            self._join(joining)

    def _prefill(self, request: _Request) -> Any:
        """Prefill one prompt alone and send its first token; its cache, or None when it already ended."""
        from transformers import DynamicCache

        request.sampler = RequestSampler(request.cfg, len(request.ids))
        cache = DynamicCache()  # full-length layers only: rows of different lengths are padded and joined
        with self.lock:
            logits = self.model(input_ids=torch.tensor([request.ids]), cache=cache, use_cache=True,
                                logits_to_keep=1).logits[:, -1].float()
        return cache if self._emit(request, logits) else None

    def _emit(self, request: _Request, scores: torch.Tensor) -> bool:
        """Pick and send the request's next token; whether it goes on."""
        if request.cancel.is_set():
            request.finish()
            return False
        token = request.sampler(request.ids, scores)  # type: ignore[misc]
        if token in self.eos_ids:
            request.finish()
            return False
        request.ids.append(token)
        request.generated += 1
        request.out.put(token)
        if request.generated >= request.cfg.max_new_tokens:
            request.finish()
            return False
        return True

    def _join(self, joining: list[tuple[_Request, Any]]) -> None:
        """Append prefilled requests' cache rows to the batch, left-padded to the longest row.

        All the requests of one admission round join in one concatenation per layer: the running batch's
        cache is copied once per round, not once per request.
        """
        masks = [torch.ones(1, len(r.ids) - 1, dtype=torch.long) for r, _ in joining]  # all tokens but the last
        caches = [c for _, c in joining]
        if self._cache is not None:
            masks.insert(0, self._mask)  # type: ignore[arg-type]
            caches.insert(0, self._cache)
        width = max(m.shape[1] for m in masks)
        joined = [_stacked([(layer.keys, layer.values) for layer in layers], width)
                  for layers in zip(*(c.layers for c in caches), strict=True)]
        self._cache = caches[0]
        self._cache.layers = joined
        self._mask = torch.cat([_left_pad(m, width) for m in masks])
        self._running.extend(r for r, _ in joining)

    def _step(self) -> None:
        mask = self._mask
        assert mask is not None
        last = torch.tensor([[r.ids[-1]] for r in self._running])
        positions = mask.sum(dim=1, keepdim=True)  # each row's next position: its real tokens so far
        mask = torch.cat([mask, torch.ones(len(self._running), 1, dtype=mask.dtype)], dim=1)
        if self.on_step is not None:
            self.on_step(len(self._running))
        with self.lock:
            logits = self.model(input_ids=last, attention_mask=mask, position_ids=positions,
                                cache=self._cache, use_cache=True).logits[:, -1].float()
        self._mask = mask
        keep = [i for i, request in enumerate(self._running) if self._emit(request, logits[i:i + 1])]
        if len(keep) < len(self._running):
            self._drop(keep)

    def _drop(self, keep: list[int]) -> None:
        """Keep only the rows in ``keep``; drop the padding columns that no kept row needs any more."""
        if not keep:
            self._running, self._cache, self._mask = [], None, None
            return
        index = torch.tensor(keep)
        mask = self._mask.index_select(0, index)  # type: ignore[union-attr]
        start = int((mask.shape[1] - mask.sum(dim=1)).min())  # the fewest padding columns of any kept row
        width = mask.shape[1] - start
        kept = ((layer.keys[:, :, start:].index_select(0, index), layer.values[:, :, start:].index_select(0, index))
                for layer in self._cache.layers)  # one layer's rows at a time
        self._cache.layers = [_stacked([rows], width) for rows in kept]
        self._mask = mask[:, start:]
        self._running = [self._running[i] for i in keep]


@functools.cache
def _spare_layer() -> type:
    """:class:`SpareLayer`, defined on first use: transformers is imported where a model runs, not at import."""
    from transformers.cache_utils import DynamicLayer

    class SpareLayer(DynamicLayer):  # type: ignore[misc]
        """A running batch's cache layer: ``keys``/``values`` (``[B, H, T, D]``) are views of buffers with free
        positions after ``T``, so a decode step writes its keys in place (``DynamicLayer.update`` concatenates,
        copying the whole batch's cache every step: at 50 streams most of a step's time)."""

        def __init__(self, keys: torch.Tensor, values: torch.Tensor, length: int) -> None:
            super().__init__()
            self._storage = (keys, values)
            self.keys, self.values = keys[:, :, :length], values[:, :, :length]
            self.device, self.is_initialized = keys.device, True

        def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
                   **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
            length, new = self.keys.shape[2], key_states.shape[2]
            if length + new > self._storage[0].shape[2]:
                self._storage = _storage([(self.keys, self.values)], length)
            keys, values = self._storage
            keys[:, :, length:length + new] = key_states
            values[:, :, length:length + new] = value_states
            self.keys, self.values = keys[:, :, :length + new], values[:, :, :length + new]
            return self.keys, self.values

    return SpareLayer


def _storage(parts: list[tuple[torch.Tensor, torch.Tensor]], width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """New key and value buffers holding the rows of every ``(keys, values)`` in ``parts``, each left-padded with
    zeros to ``width`` positions, then :data:`SPARE` free positions (one copy of the parts)."""
    rows = sum(k.shape[0] for k, _ in parts)
    _, heads, _, dim = parts[0][0].shape
    keys, values = (parts[0][i].new_empty(rows, heads, width + SPARE, dim) for i in (0, 1))
    row = 0
    for part in parts:
        count, length = part[0].shape[0], part[0].shape[2]
        for buffer, tensor in zip((keys, values), part, strict=True):
            buffer[row:row + count, :, :width - length].zero_()  # padding must hold numbers: 0 x NaN is NaN
            buffer[row:row + count, :, width - length:width] = tensor
        row += count
    return keys, values


def _stacked(parts: list[tuple[torch.Tensor, torch.Tensor]], width: int) -> Any:
    """A running-cache layer of :func:`_storage`'s buffers, ``width`` positions long."""
    return _spare_layer()(*_storage(parts, width), width)


def _left_pad(mask: torch.Tensor, width: int) -> torch.Tensor:
    """A ``[B, T]`` mask with zeros before position 0, to ``width`` positions."""
    missing = width - mask.shape[1]
    return mask if missing == 0 else torch.cat([mask.new_zeros(mask.shape[0], missing), mask], dim=1)
