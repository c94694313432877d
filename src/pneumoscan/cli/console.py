"""Shared CLI plumbing: the rich console, logging set-up, progress bars, error exits."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from pneumoscan.errors import PneumoscanError

console = Console(stderr=True)
stdout = Console()


def configure_logging(verbose: bool = False) -> None:
    """Configure logging once, for the CLI only (library code only creates loggers)."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        datefmt="[%X]",
        handlers=[RichHandler(console=console, show_path=False, rich_tracebacks=False)],
        force=True,
    )
    for noisy in ("matplotlib", "PIL", "httpx", "timm", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def progress_bar() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                    transient=False)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn expected errors into a one-line message and exit code 2, not a traceback."""
    try:
        yield
    except (PneumoscanError, FileNotFoundError, FileExistsError, ValueError) as exc:
        # soft_wrap: one line however long the path; escape: "[x]" in a path is not markup
        console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(code=2) from exc
