"""What every generation backend is: the :class:`Generator` protocol, its settings and its error.

The backends themselves (in-process transformers, llama.cpp, any OpenAI-compatible server) live in
:mod:`domainrag.serving.backends`, one module each.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from domainrag.errors import DomainRagError
from domainrag.serving.stop_sequences import StopAt


class BackendError(DomainRagError):
    """A generation backend failed or could not be reached (the API answers 502)."""


@dataclass(frozen=True)
class GenerationConfig:
    """Sampling settings of one generation; ``stop``, ``seed`` and the two penalties mean what they do in OpenAI's
    API (penalties on the completion's own tokens: ``presence`` once a token appeared, ``frequency`` per use)."""

    temperature: float = 0.1
    max_new_tokens: int = 160
    top_p: float = 0.95
    repetition_penalty: float = 1.1
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0


@runtime_checkable
class Generator(Protocol):
    """What apps and the API need from a generation backend."""

    name: str

    def stream(
        self,
        messages: Sequence[dict[str, str]],
        config: GenerationConfig | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[str]:
        """Yield text pieces as they are generated; setting ``cancel`` (or closing the iterator) stops early."""
        ...

    def generate(self, messages: Sequence[dict[str, str]], config: GenerationConfig | None = None) -> str:
        """The whole completion as one string."""
        ...


def stream_reporting_usage(
    generator: Generator,
    messages: Sequence[dict[str, str]],
    config: GenerationConfig | None,
    cancel: threading.Event | None,
    usage: dict[str, int] | None = None,
) -> StopAt:
    """``generator.stream`` as the serving paths drive it: cut at ``config.stop``, with token counts.

    Backends cut their own streams at the stop sequences (:class:`StopAt`); any other generator is
    wrapped here, so ``hit`` of the result always tells whether a stop sequence ended the text.
    Local backends are counted by the caller with their tokenizer; a remote server is the only one
    that knows its own token counts, so it reports them into ``usage`` (``prompt_tokens``,
    ``completion_tokens``) when the stream ends, as does llama.cpp (``reports_usage``).
    """
    if usage is not None and getattr(generator, "reports_usage", False):
        stream = generator.stream(messages, config, cancel, usage=usage)  # type: ignore[call-arg]
    else:
        stream = generator.stream(messages, config, cancel)
    return stream if isinstance(stream, StopAt) else StopAt(stream, config.stop if config else ())
