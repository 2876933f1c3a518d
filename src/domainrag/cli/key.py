"""domainrag key: API keys for the HTTP API (create prints the key once; only its hash is stored)."""

from __future__ import annotations

from typing import Annotated

import typer

from domainrag.cli._context import JsonFlag, command_app, console, print_rows, ws

app = command_app("key", "API keys for 'domainrag serve' (one app per key, or '*').")


@app.command("create")
def key_create(
    app_name: Annotated[str, typer.Option("--app", help="the app this key grants, or '*' for every app and model")],
    note: Annotated[str, typer.Option(help="free text shown in 'key list' (who the key is for)")] = "",
) -> None:
    """Create a key; it is printed once and cannot be shown again."""
    from domainrag.serving.keys import create_key

    token, record = create_key(ws(), app_name, note=note)
    console.print(f"created key [bold]{record['name']}[/] for app '{app_name}'")
    console.print("store it now; it will not be shown again:", style="yellow")
    console.out(token, highlight=False)


@app.command("list")
def key_list(as_json: JsonFlag = False) -> None:
    """Keys with their app and status (never the key itself)."""
    from domainrag.serving.keys import list_keys

    rows = list_keys(ws())
    for r in rows:
        r["status"] = "revoked" if r.get("revoked_at") else "active"
    print_rows(rows, ["name", "app", "status", "note", "created_at", "revoked_at"], "API keys", as_json)


@app.command("revoke")
def key_revoke(key_id: Annotated[str, typer.Argument(help="key id from 'key list' (key_...)")]) -> None:
    """Revoke a key; requests using it get 401 at once."""
    from domainrag.serving.keys import revoke_key

    revoke_key(ws(), key_id)
    console.print(f"revoked {key_id}")
