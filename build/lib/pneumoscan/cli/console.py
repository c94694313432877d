"""Shared CLI plumbing: the rich console, logging set-up, progress bars, error exits.

On a terminal, logs and messages are rich (colours, aligned columns, wrapped to the
window). Anywhere else (a file, a pipe, journald, a container's log collector) every log
record is one plain line, ``2026-11-25 16:20:01,123 INFO pneumoscan.server.app: ...``,
never wrapped or split, so that grep and log shippers see whole records.
"""

from __future__ import annotations

import logging
import warnings
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

#: A log record written anywhere but a terminal.
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class OneLineFormatter(logging.Formatter):
    """``PLAIN_FORMAT``, with the line breaks of a message or a traceback written as
    ``\\n``: one record, one line."""

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).replace("\r", "\\r").replace("\n", "\\n")


class PlainLineHandler(logging.Handler):
    """Writes each record as one line to ``output``'s stream, looked up at every record (as
    rich does), so a replaced ``sys.stderr`` is followed rather than written after close."""

    def __init__(self, output: Console) -> None:
        super().__init__()
        self.output = output
        self.setFormatter(OneLineFormatter(PLAIN_FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = self.output.file
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)


def log_handler(output: Console) -> logging.Handler:
    """Rich's handler when ``output`` is a terminal, else plain one-line records on the same
    stream."""
    if not output.is_terminal:
        return PlainLineHandler(output)
    handler = RichHandler(console=output, show_path=False, rich_tracebacks=False)
    handler.setFormatter(logging.Formatter("%(message)s", datefmt="[%X]"))
    return handler


def silence_header_messages() -> None:
    """Keep the DICOM libraries' own messages out of the output: on odd header values
    pydicom's warnings quote them, highdicom's quote person names copied into results and
    its INFO lines name UIDs, pynetdicom logs a line per DIMSE message. Patient data must
    not reach a log; errors still reach the output rows and our own log lines. For the
    CLI commands only (a library user keeps their own logging)."""
    logging.getLogger("pydicom").setLevel(logging.CRITICAL + 1)
    logging.getLogger("highdicom").setLevel(logging.WARNING)
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module=r"pydicom(\.|$)")
    warnings.filterwarnings("ignore", module=r"highdicom(\.|$)")


def configure_logging(verbose: bool = False) -> None:
    """Configure logging once, for the CLI only (library code only creates loggers)."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        handlers=[log_handler(console)], force=True)
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
