"""domainrag key: API keys for the HTTP API (create prints the key once; only its hash is stored)."""

from __future__ import annotations

from typing import Annotated

import typer

from domainrag.cli._context import JsonFlag, command_app, console, print_rows, ws

app = command_app("key", "API keys for 'domainrag serve' (one app per key, or '*').")
RPM_HELP = "requests per minute for this key (0: no limit); left out: the server's default (serve --key-rpm)"
STREAMS_HELP = ("generations this key may run at once, streamed or not (0: no limit); left out: the server's "
                "default (serve --key-max-streams)")


def _limits_text(rpm: int | None, max_streams: int | None) -> str:
    parts = [f"{name} {value or 'unlimited'}" for name, value in (("rpm", rpm), ("max streams", max_streams))
             if value is not None]
    return f" ({', '.join(parts)})" if parts else ""


@app.command("create")
def key_create(
    app_name: Annotated[str, typer.Option("--app", help="the app this key grants, or '*' for every app and model")],
    note: Annotated[str, typer.Option(help="free text shown in 'key list' (who the key is for)")] = "",
    rpm: Annotated[int | None, typer.Option(min=0, help=RPM_HELP)] = None,
    max_streams: Annotated[int | None, typer.Option(min=0, help=STREAMS_HELP)] = None,
) -> None:
    """Create a key; it is printed once and cannot be shown again."""
    from domainrag.serving.keys import create_key

    token, record = create_key(ws(), app_name, note=note, rpm=rpm, max_streams=max_streams)
    console.print(f"created key [bold]{record['name']}[/] for app '{app_name}'{_limits_text(rpm, max_streams)}")
    console.print("store it now; it will not be shown again:", style="yellow")
    console.out(token, highlight=False)


@app.command("list")
def key_list(as_json: JsonFlag = False) -> None:
    """Keys with their app and status (never the key itself)."""
    from domainrag.serving.keys import list_keys

    rows = list_keys(ws())
    for r in rows:
        r["status"] = "revoked" if r.get("revoked_at") else "active"
        for field in ("rpm", "max_streams"):
            r[field] = "default" if r.get(field) is None else (r[field] or "unlimited")
    print_rows(rows, ["name", "app", "status", "rpm", "max_streams", "note", "created_at", "revoked_at"],
               "API keys", as_json)


@app.command("limits")
def key_limits(
    key_id: Annotated[str, typer.Argument(help="key id from 'key list' (key_...)")],
    rpm: Annotated[int | None, typer.Option(min=0, help=RPM_HELP)] = None,
    max_streams: Annotated[int | None, typer.Option(min=0, help=STREAMS_HELP)] = None,
) -> None:
    """Set a key's own limits (an option left out goes back to the server's default); a running server
    applies them at the key's next request."""
    from domainrag.serving.keys import set_key_limits

    set_key_limits(ws(), key_id, rpm=rpm, max_streams=max_streams)
    console.print(f"{key_id}: {_limits_text(rpm, max_streams).strip(' ()') or 'server defaults'}")


@app.command("revoke")
def key_revoke(key_id: Annotated[str, typer.Argument(help="key id from 'key list' (key_...)")]) -> None:
    """Revoke a key; requests using it get 401 at once."""
    from domainrag.serving.keys import revoke_key

    revoke_key(ws(), key_id)
    console.print(f"revoked {key_id}")
