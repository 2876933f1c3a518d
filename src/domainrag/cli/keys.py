"""``domainrag key``: API keys for the HTTP API (create prints the key once; only its hash is stored)."""

from __future__ import annotations

from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add the ``key`` command group to the root CLI."""
    key_app = typer.Typer(help="API keys for `domainrag serve` (one app per key, or '*').", no_args_is_help=True)

    @key_app.command("create")
    def key_create(
        app_name: Annotated[str, typer.Option("--app", help="the app this key grants, or '*' for every app and model")],
        note: Annotated[str, typer.Option(help="free text shown in `key list` (who the key is for)")] = "",
    ) -> None:
        """Create a key; it is printed once and cannot be shown again."""
        from domainrag.cli.main import console, ws
        from domainrag.serving.keys import create_key

        token, record = create_key(ws(), app_name, note=note)
        console.print(f"created key [bold]{record['name']}[/] for app '{app_name}'")
        console.print("store it now; it will not be shown again:", style="yellow")
        console.out(token, highlight=False)

    @key_app.command("list")
    def key_list() -> None:
        """Keys with their app and status (never the key itself)."""
        from domainrag.cli.main import _table, ws
        from domainrag.serving.keys import list_keys

        rows = list_keys(ws())
        for r in rows:
            r["status"] = "revoked" if r.get("revoked_at") else "active"
        _table(rows, ["name", "app", "status", "note", "created_at", "revoked_at"], "API keys")

    @key_app.command("revoke")
    def key_revoke(key_id: Annotated[str, typer.Argument(help="key id from `key list` (key_...)")]) -> None:
        """Revoke a key; requests using it get 401 at once."""
        from domainrag.cli.main import console, ws
        from domainrag.serving.keys import revoke_key

        revoke_key(ws(), key_id)
        console.print(f"revoked {key_id}")

    app.add_typer(key_app, name="key")
