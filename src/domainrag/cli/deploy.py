"""``domainrag model deploy`` / ``model undeploy``: pick the backend that serves a model's generations."""

from __future__ import annotations

from typing import Annotated

import typer


def register(model_app: typer.Typer) -> None:
    """Add ``deploy`` and ``undeploy`` to the ``model`` command group."""

    @model_app.command("deploy")
    def model_deploy(
        name: Annotated[str, typer.Argument(help="registered LLM")],
        endpoint: Annotated[
            str,
            typer.Option(help='JSON: {"type": "transformers"}, {"type": "openai", "base_url": "http://host:8000/v1", '
                         '"model": "..."} or {"type": "llamacpp", "gguf": "<file or base model>", "n_ctx": 2048}'),
        ] = '{"type": "transformers"}',
    ) -> None:
        """Serve a model's generations in-process, from an OpenAI-compatible server, or with llama.cpp.

        The endpoint is validated first (weights verified, package present, or server reachable and
        serving the model). Remote keys are read from $DOMAINRAG_REMOTE_API_KEY (or the variable
        named by "api_key_env") at request time and never stored.
        """
        from domainrag.cli.main import console, ws
        from domainrag.serving.backends import deploy_model, endpoint_for

        deploy_model(ws(), name, endpoint)
        console.print(f"model [bold]{name}[/] → {_describe(endpoint_for(ws(), name))}")

    @model_app.command("undeploy")
    def model_undeploy(name: Annotated[str, typer.Argument(help="registered LLM")]) -> None:
        """Drop a model's endpoint: it runs in-process with transformers again."""
        from domainrag.cli.main import console, ws
        from domainrag.serving.backends import undeploy_model

        undeploy_model(ws(), name)
        console.print(f"model [bold]{name}[/] → in-process transformers")


def _describe(cfg: object) -> str:
    from domainrag.serving.backends import LlamaCppEndpoint, OpenAIEndpoint

    if isinstance(cfg, OpenAIEndpoint):
        return f"OpenAI-compatible server {cfg.base_url} (model {cfg.model}, key from ${cfg.api_key_env})"
    if isinstance(cfg, LlamaCppEndpoint):
        return f"llama.cpp {cfg.gguf} (n_ctx {cfg.n_ctx})"
    return "in-process transformers"
