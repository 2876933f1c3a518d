"""Generation backends, one module each, and the per-model endpoint config that picks one.

* :mod:`.config`: the endpoint configs (a discriminated union on ``type``) and their parser.
* :mod:`.transformers`: in-process transformers (the default).
* :mod:`.openai_compatible`: any OpenAI-compatible server, through the ``openai`` SDK.
* :mod:`.llamacpp`: llama.cpp (optional extra); :mod:`.gguf`: which GGUF file it runs.
* :mod:`.registry`: the generator serving a model name, endpoint validation, ``model deploy``/``undeploy``.

The names below are the package's public surface; import them from ``domainrag.serving.backends``.
"""

from domainrag.serving.backends.config import (
    DEFAULT_API_KEY_ENV,
    ENDPOINT_EXAMPLES,
    EndpointConfig,
    GgufType,
    LlamaCppEndpoint,
    OpenAIEndpoint,
    TransformersEndpoint,
    parse_endpoint,
)
from domainrag.serving.backends.gguf import check_gguf, convert_gguf, llamacpp_gguf, resolve_gguf
from domainrag.serving.backends.llamacpp import (
    LLAMACPP_INSTALL_HINT,
    LlamaCppGenerator,
    import_llama_cpp,
    load_llamacpp,
)
from domainrag.serving.backends.openai_compatible import OpenAICompatibleGenerator
from domainrag.serving.backends.registry import (
    check_llm,
    deploy_model,
    endpoint_for,
    generator_for,
    prepare_endpoint,
    undeploy_model,
    validate_endpoint,
)
from domainrag.serving.backends.transformers import TransformersGenerator, load_generator, resolve_dtype
from domainrag.serving.generator import BackendError

__all__ = [
    "DEFAULT_API_KEY_ENV",
    "ENDPOINT_EXAMPLES",
    "LLAMACPP_INSTALL_HINT",
    "BackendError",
    "EndpointConfig",
    "GgufType",
    "LlamaCppEndpoint",
    "LlamaCppGenerator",
    "OpenAICompatibleGenerator",
    "OpenAIEndpoint",
    "TransformersEndpoint",
    "TransformersGenerator",
    "check_gguf",
    "check_llm",
    "convert_gguf",
    "deploy_model",
    "endpoint_for",
    "generator_for",
    "import_llama_cpp",
    "llamacpp_gguf",
    "load_generator",
    "load_llamacpp",
    "parse_endpoint",
    "prepare_endpoint",
    "resolve_dtype",
    "resolve_gguf",
    "undeploy_model",
    "validate_endpoint",
]
