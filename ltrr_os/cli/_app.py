"""The `ltrr` command line: thin commands over the package's public API."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from .. import __version__
from .._errors import LtrrError
from ..config import LtrrSettings, load_settings
from ..opensearch import connect, run_checks

app = typer.Typer(
    name="ltrr",
    help="Learning to rank and retrieve on OpenSearch.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)


class _State:
    config_file: Path | None = None
    _settings: LtrrSettings | None = None

    def settings(self) -> LtrrSettings:
        if self._settings is None:
            self._settings = load_settings(self.config_file)
        return self._settings


state = _State()


@app.callback()
def _options(
    config: Annotated[
        Path | None,
        typer.Option("--config", help="TOML config file (else $LTRR_CONFIG, else ./ltrr.toml)."),
    ] = None,
) -> None:
    state.config_file = config


@app.command()
def version() -> None:
    """Print the ltrr-os version."""
    console.print(__version__)


@app.command()
def doctor() -> None:
    """Check that OpenSearch is reachable and has every capability ltrr-os uses."""
    settings = state.settings()
    table = Table("check", "", "detail", title=f"OpenSearch at {settings.opensearch_url}")
    failed = 0
    for check in run_checks(connect(settings), settings.index_prefix):
        failed += not check.ok
        table.add_row(check.name, "[green]ok[/]" if check.ok else "[red]FAIL[/]", check.detail)
    console.print(table)
    if failed:
        raise typer.Exit(1)


def main() -> None:
    """Console entry point: user-facing errors become one line on stderr and exit code 2."""
    try:
        app()
    except LtrrError as exc:
        err_console.print(f"[red]error:[/] {exc}", highlight=False)
        sys.exit(2)
