"""OpenAI-compatible backend: streams ``/chat/completions`` from any such server with the official ``openai`` SDK.

vLLM, TGI, Ollama, a cloud or another ``domainrag serve``: the SDK speaks the protocol (requests, SSE,
error bodies); this module maps its errors to :class:`~domainrag.serving.generator.BackendError` with a
hint, reads the API key per request from an environment variable, and stops the server's generation
when the caller cancels (closing the stream closes the connection).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import openai

from domainrag.serving.backends.config import DEFAULT_API_KEY_ENV
from domainrag.serving.generator import BackendError, GenerationConfig
from domainrag.serving.stop_sequences import StopAt


class OpenAICompatibleGenerator:
    """Streams chat completions from an OpenAI-compatible server (``base_url`` usually ends in ``/v1``)."""

    reports_usage = True  # token counts come from the server (``stream_options.include_usage``)

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str = DEFAULT_API_KEY_ENV,
        timeout: float = 120.0,
        name: str | None = None,
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = name or model
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.extra_body = dict(extra_body or {})
        # The SDK's own api_key is never sent: every request carries the key read from the environment
        # just then (see _auth), so a rotated key takes effect at once and none is kept in this object.
        self._client = openai.OpenAI(
            base_url=self.base_url, api_key="read-per-request", max_retries=0,
            timeout=openai.Timeout(timeout, connect=min(timeout, 10.0)),
        )

    def _auth(self) -> dict[str, Any]:
        key = os.environ.get(self.api_key_env)
        return {"Authorization": f"Bearer {key}" if key else openai.omit}

    def _error(self, url: str, exc: openai.OpenAIError) -> BackendError:
        """A clear :class:`BackendError` (with a hint) for an SDK error on ``url``."""
        if isinstance(exc, openai.APITimeoutError):
            return BackendError(f"generation endpoint {url} timed out ({type(exc.__cause__ or exc).__name__})",
                                hint="raise the endpoint's timeout, or check the server's load")
        if isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__
            return BackendError(f"cannot reach generation endpoint {url}: {cause or type(exc).__name__}",
                                hint="check that the server is running and base_url (usually ending in /v1) is right")
        if isinstance(exc, openai.APIStatusError):
            hint = None
            if exc.status_code in (401, 403):
                hint = f"set the server's API key in ${self.api_key_env}" + (
                    "" if os.environ.get(self.api_key_env) else " (it is not set)")
            elif exc.status_code == 404:
                hint = f"check base_url and that the server serves model '{self.model}' (GET {self.base_url}/models)"
            return BackendError(f"generation endpoint {url} answered {exc.status_code}: {_message(exc)}", hint=hint)
        if isinstance(exc, openai.APIError):  # an error event inside the stream
            return BackendError(f"generation endpoint {url} failed mid-stream: {exc.message}")
        return BackendError(f"generation endpoint {url} failed: {exc}")

    def stream(
        self,
        messages: Sequence[dict[str, str]],
        config: GenerationConfig | None = None,
        cancel: threading.Event | None = None,
        usage: dict[str, int] | None = None,
    ) -> StopAt:
        """Yield content deltas; setting ``cancel`` (or closing the iterator) closes the connection.

        ``stop``, ``seed`` and the penalties are passed to the server; the text is also cut at the first
        stop sequence here, for servers that ignore ``stop``. With ``usage`` given, the server is asked
        for its token counts, which are stored there.
        """
        cfg = config or GenerationConfig()
        return StopAt(self._pieces(messages, cfg, cancel, usage), cfg.stop)

    def _pieces(
        self, messages: Sequence[dict[str, str]], cfg: GenerationConfig, cancel: threading.Event | None,
        usage: dict[str, int] | None,
    ) -> Iterator[str]:
        url = f"{self.base_url}/chat/completions"
        if cancel is not None and cancel.is_set():
            return
        options: dict[str, Any] = {}
        if usage is not None and "stream_options" not in self.extra_body:
            options["stream_options"] = {"include_usage": True}
        if cfg.stop:
            options["stop"] = list(cfg.stop)
        if cfg.seed is not None:
            options["seed"] = cfg.seed
        if cfg.presence_penalty:
            options["presence_penalty"] = cfg.presence_penalty
        if cfg.frequency_penalty:
            options["frequency_penalty"] = cfg.frequency_penalty
        try:
            stream = self._client.chat.completions.create(
                model=self.model, messages=list(messages), stream=True,  # type: ignore[arg-type]
                max_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
                extra_headers=self._auth(), extra_body=self.extra_body, **options,
            )
            with stream:  # leaving it closes the connection; the server stops generating
                if stream.response.headers.get("content-type", "").startswith("application/json"):
                    yield from _whole_answer(stream.response.read(), url, usage)  # the server ignored stream
                    return
                for chunk in stream:
                    if cancel is not None and cancel.is_set():
                        return
                    _store_usage(chunk.usage, usage)
                    for choice in chunk.choices:
                        if choice.delta.content:
                            yield choice.delta.content
        except openai.OpenAIError as exc:
            raise self._error(url, exc) from exc
        except ValueError as exc:  # an event that is not JSON
            raise BackendError(f"generation endpoint {url} sent a malformed event: {exc}") from exc

    def generate(self, messages: Sequence[dict[str, str]], config: GenerationConfig | None = None) -> str:
        return "".join(self.stream(messages, config))

    def models(self) -> list[str]:
        """Model ids the server lists at ``GET <base_url>/models``."""
        url = f"{self.base_url}/models"
        try:
            page = self._client.models.list(extra_headers=self._auth(), timeout=min(self.timeout, 30.0))
            return [str(m.id) for m in page.data]
        except openai.APIResponseValidationError as exc:
            raise BackendError(f"{url} did not answer an OpenAI model list",
                               hint="base_url should be the server's OpenAI root, usually ending in /v1") from exc
        except openai.OpenAIError as exc:
            raise self._error(url, exc) from exc
        except (ValueError, AttributeError, TypeError) as exc:
            raise BackendError(f"{url} did not answer an OpenAI model list",
                               hint="base_url should be the server's OpenAI root, usually ending in /v1") from exc

    def check(self) -> None:
        """Raise unless the server is reachable, accepts the key and serves ``model``."""
        served = self.models()
        if served and self.model not in served:
            raise BackendError(f"{self.base_url} does not serve model '{self.model}' (it serves: {', '.join(served)})")

    def close(self) -> None:
        self._client.close()


def _message(exc: openai.APIStatusError) -> str:
    """The server's own error message (OpenAI's ``{"error": {"message"}}``, FastAPI's ``detail``, or the text)."""
    body = exc.body
    if isinstance(body, dict):
        message = body.get("message") or body.get("detail")
        if message:
            return str(message)
    return str(body) if body else exc.response.text[:300]


def _store_usage(reported: Any, usage: dict[str, int] | None) -> None:
    """Copy a server's token counts (OpenAI's ``usage`` object) into ``usage`` when both are there."""
    if usage is None or reported is None:
        return
    for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
        value = getattr(reported, key, None) if not isinstance(reported, dict) else reported.get(key)
        if isinstance(value, int):
            usage[key] = value


def _whole_answer(raw: bytes, url: str, usage: dict[str, int] | None) -> Iterator[str]:
    """The content of a non-streamed ``chat.completion`` body (for servers that ignore ``stream``)."""
    try:
        body = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BackendError(f"generation endpoint {url} sent a malformed answer: {raw[:200]!r}") from exc
    if not isinstance(body, dict):
        raise BackendError(f"generation endpoint {url} sent an unexpected answer: {str(body)[:200]}")
    _store_usage(body.get("usage"), usage)
    for choice in body.get("choices") or []:
        if piece := (choice.get("message") or {}).get("content"):
            yield piece
