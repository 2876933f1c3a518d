"""Request bodies of the HTTP API (pydantic), validated by FastAPI; OpenAI's bodies accept unknown parameters."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from domainrag.serving.http_errors import ApiError

APP_MODEL_PREFIX = "app:"
"""``model`` of a chat request or model-list entry that names an app: ``app:<name>``."""
MAX_EMBEDDING_INPUTS = 2048
MAX_EMBEDDING_INPUT_CHARS = 32_000


class CompletionRequest(BaseModel):
    """Ask an app one question; pass the returned ``session_id`` back for follow-ups."""

    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=8000)
    session_id: str | None = Field(None, description="continue a conversation (8-128 chars [A-Za-z0-9_-])")
    stream: bool = False
    top_k: int | None = Field(None, ge=1, le=100)
    filters: dict[str, Any] | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        if any(part.get("type") != "text" for part in self.content):
            raise ApiError(400, "only text content parts are supported", param="messages")
        return "".join(str(part.get("text", "")) for part in self.content)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


MAX_STOP_SEQUENCES = 4
_UNSUPPORTED = "not supported: a request that sets it is refused with 400 (code unsupported_parameter)"


class ChatRequest(BaseModel):
    """OpenAI chat-completions body. Parameters that would change the answer's kind and cannot be honoured
    (tools, functions, structured output, logprobs, several choices) are refused with 400; other unknown
    parameters (``user``, ``metadata``, ``store`` …) are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1, le=4096)
    max_completion_tokens: int | None = Field(None, ge=1, le=4096)
    stop: str | list[str] | None = Field(
        None, description=f"up to {MAX_STOP_SEQUENCES} sequences; the text ends before the first one generated")
    seed: int | None = Field(None, description="same seed, same request: the same sampled text")
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    n: int = Field(1, description="only 1 is supported")
    tools: Any = Field(None, description=_UNSUPPORTED)
    tool_choice: Any = Field(None, description=_UNSUPPORTED + ' (except "none")')
    functions: Any = Field(None, description=_UNSUPPORTED)
    function_call: Any = Field(None, description=_UNSUPPORTED + ' (except "none")')
    response_format: Any = Field(None, description=_UNSUPPORTED + ' (except {"type": "text"})')
    logprobs: bool | None = Field(None, description=_UNSUPPORTED + " (except false)")
    top_logprobs: int | None = Field(None, description=_UNSUPPORTED)
    # domainrag extensions (apps only)
    session_id: str | None = None
    top_k: int | None = Field(None, ge=1, le=100)
    filters: dict[str, Any] | None = None

    def stop_sequences(self) -> tuple[str, ...]:
        """``stop`` as a tuple (400 for more than four sequences or an empty one)."""
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stops) > MAX_STOP_SEQUENCES or not all(stops):
            raise ApiError(400, f"stop must be a non-empty string or a list of at most {MAX_STOP_SEQUENCES} "
                           "non-empty strings", param="stop", code="invalid_value")
        return tuple(stops)

    def check_supported(self) -> None:
        """400 in OpenAI's shape, naming the parameter, for what this server cannot honour."""
        refused = {
            "n": self.n != 1,
            "tools": bool(self.tools),
            "tool_choice": self.tool_choice not in (None, "none"),
            "functions": bool(self.functions),
            "function_call": self.function_call not in (None, "none"),
            "response_format": self.response_format is not None and self.response_format != {"type": "text"},
            "logprobs": bool(self.logprobs),
            "top_logprobs": self.top_logprobs is not None,
        }
        for param, bad in refused.items():
            if bad:
                what = "n must be 1" if param == "n" else f"'{param}' is not supported by this server"
                raise ApiError(400, what, param=param, code="unsupported_parameter")


class EmbeddingRequest(BaseModel):
    """OpenAI embeddings body; unknown OpenAI parameters are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    input: str | list[str] = Field(description=f"a string or up to {MAX_EMBEDDING_INPUTS} strings")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1, description="must equal the model's dimension if given")

    def texts(self) -> list[str]:
        texts = [self.input] if isinstance(self.input, str) else self.input
        if not texts or len(texts) > MAX_EMBEDDING_INPUTS:
            raise ApiError(400, f"input must hold 1 to {MAX_EMBEDDING_INPUTS} strings", param="input")
        for i, text in enumerate(texts):
            if not text.strip() or len(text) > MAX_EMBEDDING_INPUT_CHARS:
                raise ApiError(400, f"input[{i}] must be a non-empty string of at most "
                               f"{MAX_EMBEDDING_INPUT_CHARS} characters", param="input")
        return texts
