"""Entry point of the ``pneumoscan`` command; each command lives in its own module."""

from __future__ import annotations

import os

import typer

from pneumoscan import DISCLAIMER, __version__
from pneumoscan.cli.evaluate_command import evaluate_command
from pneumoscan.cli.fit_population_command import fit_population_command
from pneumoscan.cli.fit_scope_command import fit_scope_command
from pneumoscan.cli.train_command import train_command

app = typer.Typer(
    name="pneumoscan",
    help=f"Pneumonia detection on chest X-rays. {DISCLAIMER}",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # click's plain help: option, argument and text wrapped at word boundaries to the
    # terminal; typer's rich panels added "<bool>" type columns and cut long words ("…").
    rich_markup_mode=None,
)
app.command("train")(train_command)
app.command("evaluate")(evaluate_command)
app.command("fit-scope")(fit_scope_command)
app.command("fit-population")(fit_population_command)


def _register_optional_commands() -> None:
    """Commands whose modules may be absent in a slim install are added when importable."""
    import importlib

    for module_name, command, attr in (
        ("pneumoscan.cli.predict_command", "predict", "predict_command"),
        ("pneumoscan.cli.serve_command", "serve", "serve_command"),
        ("pneumoscan.cli.export_command", "export", "export_command"),
        ("pneumoscan.cli.dicom_node_command", "dicom-node", "dicom_node_command"),
    ):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue
            raise
        app.command(command)(getattr(module, attr))


_register_optional_commands()


@app.callback(invoke_without_command=True)
def main(version: bool = typer.Option(False, "--version", help="Print the version.")) -> None:
    """Pneumonia detection on chest X-rays (decision support, not a diagnosis)."""
    if version:
        typer.echo(f"pneumoscan {__version__}")
        raise typer.Exit()


os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is ever fetched from a hub
