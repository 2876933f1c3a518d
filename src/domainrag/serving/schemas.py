"""Request bodies and response models of the HTTP API (pydantic), as the OpenAPI document describes them.

Request bodies are validated by FastAPI; OpenAI's bodies accept unknown parameters. Response models are
what the routes send (their tests validate real answers against them); every route documents its error
statuses with :data:`ErrorResponse`, OpenAI's error envelope.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from domainrag.retrieval.retriever import Mode
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


DEFAULT_TEXT_COMPLETION_MAX_TOKENS = 16
"""``max_tokens`` of a legacy completion that sets none: OpenAI's default for ``/v1/completions``."""


class TextCompletionRequest(BaseModel):
    """OpenAI's legacy completions body (``POST /v1/completions``): one ``prompt`` in, text out. The prompt
    reaches the model as one user message (the served LLMs are chat models), or as the question of an app."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    prompt: str | list[str] = Field(description="a string, or a list holding one string (token ids are refused)")
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int = Field(DEFAULT_TEXT_COMPLETION_MAX_TOKENS, ge=1, le=4096,
                            description="capped by an app's max_new_tokens")
    stop: str | list[str] | None = Field(None, description=f"up to {MAX_STOP_SEQUENCES} sequences")
    seed: int | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    n: int = Field(1, description="only 1 is supported")
    best_of: int | None = Field(None, description="only 1 is supported")
    echo: bool = Field(False, description=_UNSUPPORTED + " (except false)")
    logprobs: int | None = Field(None, description=_UNSUPPORTED)
    suffix: str | None = Field(None, description=_UNSUPPORTED)
    # domainrag extensions (apps only)
    top_k: int | None = Field(None, ge=1, le=100)
    filters: dict[str, Any] | None = None

    def to_chat(self) -> ChatRequest:
        """The same request as a one-message chat request (400 for what cannot be honoured)."""
        refused = {"best_of": self.best_of not in (None, 1), "echo": self.echo, "logprobs": self.logprobs is not None,
                   "suffix": self.suffix is not None}
        for param, bad in refused.items():
            if bad:
                what = "best_of must be 1" if param == "best_of" else f"'{param}' is not supported by this server"
                raise ApiError(400, what, param=param, code="unsupported_parameter")
        prompts = [self.prompt] if isinstance(self.prompt, str) else self.prompt
        if len(prompts) != 1 or not prompts[0].strip():
            raise ApiError(400, "prompt must be one non-empty string (a list of several prompts is not supported)",
                           param="prompt", code="invalid_value")
        chat = ChatRequest(
            model=self.model, messages=[ChatMessage(role="user", content=prompts[0])], stream=self.stream,
            stream_options=self.stream_options, temperature=self.temperature, top_p=self.top_p,
            max_tokens=self.max_tokens, stop=self.stop, seed=self.seed, presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty, n=self.n, top_k=self.top_k, filters=self.filters)
        chat.check_supported()
        return chat


# ---- responses -------------------------------------------------------------------------------------------


class _Response(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(_Response):
    message: str
    type: str = Field(description="invalid_request_error, authentication_error, permission_error, server_error …")
    param: str | None = Field(None, description="the request field at fault, where there is one")
    code: str | None = Field(None, description="a machine-readable reason: validation_error, invalid_api_key …")


class ErrorResponse(_Response):
    """OpenAI's error envelope, used for every error status."""

    error: ErrorDetail


_ERRORS = {
    400: "bad input: a field that fails validation or a parameter this server cannot honour (param names it)",
    401: "missing, invalid or revoked API key",
    403: "the API key does not grant this app, model or embedding model",
    404: "no such app or model",
    413: "request body too large (DOMAINRAG_MAX_BODY_BYTES)",
    429: "too many requests for this key; retry after the Retry-After header's seconds",
    503: "every generation slot is busy past DOMAINRAG_QUEUE_TIMEOUT; retry after the Retry-After header's seconds",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error statuses, each with OpenAI's error envelope."""
    return {status: {"model": ErrorResponse, "description": _ERRORS[status]} for status in statuses}


KEYED_ERRORS = error_responses(400, 401, 403, 404, 429)
"""Errors of every route behind a key."""
GENERATION_ERRORS = error_responses(400, 401, 403, 404, 413, 429, 503)
"""Errors of routes that take a generation slot."""


class Usage(_Response):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class UrlCitation(_Response):
    url: str = Field(description="the document's source URI, else domainrag://<index>/<doc_id>")
    title: str = Field(description="the document, with its page and section where known")
    start_index: int
    end_index: int


class Annotation(_Response):
    """OpenAI's message annotation: the answer span ``[start_index, end_index)`` rests on ``url``."""

    type: Literal["url_citation"] = "url_citation"
    url_citation: UrlCitation


class Reference(_Response):
    """A passage an answer cites (or, in ``passages``, every passage the model was given)."""

    citation: int = Field(description="its [n] number in the prompt")
    chunk_id: str
    document: str
    title: str
    score: float
    ranks: dict[str, int] = Field(description="its rank in each retriever that found it")
    excerpt: str = Field(description="the passage's first characters")
    text: str = Field(description="the full passage, as the model saw it")
    url: str
    page: int | str | None = None
    section: str | None = None
    cited: bool | None = Field(None, description="in passages: whether the answer cites it")


class Grounding(_Response):
    """Whether an app answer rests on its passages: per-sentence support and the answerability gate's decision."""

    grounded: bool | None = Field(description="true: every sentence cites a passage that supports it and the gate "
                                              "ran; null: could not be established (abstained, no gate)")
    abstained: bool = Field(description="the answer is the app's not-found text")
    reason: str
    gate: dict[str, Any] | None = Field(None, description="the answerability gate's signals and decision")
    sentences: list[dict[str, Any]] = Field(description="each sentence, its citations, support and status")
    flagged: int = Field(description="sentences not supported by a cited passage")


class AssistantMessage(_Response):
    role: Literal["assistant"] = "assistant"
    content: str
    annotations: list[Annotation] | None = Field(None, description="an app answer's sources")


FinishReason = Literal["stop", "length"]


class ChatChoice(_Response):
    index: int
    message: AssistantMessage
    logprobs: None = None
    finish_reason: FinishReason


class ChatCompletion(_Response):
    """OpenAI's ``chat.completion`` (``stream: false``); apps add ``references`` and, in a session, ``session_id``."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    references: list[Reference] | None = None
    grounding: Grounding | None = None
    session_id: str | None = None


class TextChoice(_Response):
    index: int
    text: str
    logprobs: None = None
    finish_reason: FinishReason | None = Field(description="null in stream chunks before the last")


class TextCompletion(_Response):
    """OpenAI's legacy ``text_completion`` (each stream chunk has this shape too; usage in the last, if asked)."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[TextChoice]
    usage: Usage | None = None
    references: list[Reference] | None = None


class ModelEntry(_Response):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    kind: Literal["llm", "embedding", "app"]


class ModelList(_Response):
    object: Literal["list"] = "list"
    data: list[ModelEntry]


class AppView(_Response):
    name: str
    model: str
    index: str
    mode: Mode
    top_k: int
    created_at: float
    updated_at: float


class AppList(_Response):
    object: Literal["list"] = "list"
    data: list[AppView]


class AppAnswer(_Response):
    """An app's answer (``stream: false``); streamed, the same fields come in the ``references`` event."""

    answer: str
    references: list[Reference] = Field(description="the passages the answer cites (all given, if it cites none)")
    passages: list[Reference] = Field(description="every passage the model was given, cited ones marked")
    grounding: Grounding | None = Field(None, description="per-sentence support; null without a gate")
    finish_reason: FinishReason = Field(description='"length": the answer was cut at the token limit')
    session_id: str
