"""Command-line interface: parses, validates and calls the library; holds no algorithm."""

from __future__ import annotations

import typer

from cqtrestore import __version__

app = typer.Typer(
    help="Restore damaged music recordings with a CQT-Diff diffusion prior.", no_args_is_help=True
)


@app.command()
def version() -> None:
    """Print the installed cqtrestore version."""
    typer.echo(__version__)


def main() -> None:
    """Console-script entry point."""
    app()
