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


class ChatRequest(BaseModel):
    """OpenAI chat-completions body; unknown OpenAI parameters are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1, le=4096)
    max_completion_tokens: int | None = Field(None, ge=1, le=4096)
    n: int = Field(1, ge=1, le=1, description="only 1 is supported")
    # domainrag extensions (apps only)
    session_id: str | None = None
    top_k: int | None = Field(None, ge=1, le=100)
    filters: dict[str, Any] | None = None


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
