"""The domainrag command: assembles the command modules of this package into one CLI."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Annotated

import typer

from domainrag.cli import _context, apply, dataset, doctor, index, ingest, job, key, model, quickstart, serve
from domainrag.cli import app as app_group
from domainrag.cli import eval as eval_group

HELP = ("domainrag: one CLI over the data lake, training jobs, indexes and RAG apps.\n\n"
        "Command groups mirror the cloud APIs they replace: 'job create' (CreateJob), 'model create' (CreateModel), "
        "'index create' (PUT /index), 'ingest' (POST /_bulk), 'app create' (CreateApplication), "
        "'app invoke --stream' (InvokeApplication).\n\n"
        "Exit status: 0 done, 1 an operation failed or a name was not found, 2 a usage error "
        "(unknown option, invalid option value), 3 ingest skipped some files or lines.")

# Every command module defines `app` (see _context.command_app): a named one is a command group, an
# unnamed one adds its commands at the top level. Heavy imports stay inside the commands, for start-up
# time (see _context.py).
COMMANDS = (dataset, job, model, index, ingest, app_group, key, eval_group, serve, doctor, quickstart, apply)

# CliGroup turns every user error into one printed message and an exit status (see _context.exit_code).
app = typer.Typer(help=HELP, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  cls=_context.CliGroup)
for module in COMMANDS:
    app.add_typer(module.app)


@app.callback()
def _root(
    workspace: Annotated[Path | None, typer.Option(
        "--workspace", "-w", help="workspace folder (default $DOMAINRAG_HOME or ./.domainrag)")] = None,
) -> None:
    _context.workspace.configure(workspace)


def _quiet_libraries() -> None:
    """Library progress bars and deprecation chatter drown our own output on the terminal.

    The command (not the library) also defaults to offline model loading, since the shipped weights are
    local; HF_HUB_OFFLINE=0 lets hub ids download.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("LANCE_LOG", "error")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)


def main() -> None:
    """Entry point; errors are printed and mapped to exit statuses by _context.CliGroup."""
    _quiet_libraries()
    app()


if __name__ == "__main__":
    main()
