"""Logging set-up: rich on a terminal, one plain line per record anywhere else."""

from __future__ import annotations

import io
import logging
import subprocess
import sys

import pytest
from rich.console import Console
from rich.logging import RichHandler

from pneumoscan.cli.console import log_handler

URL = "/api/v1/predict?heatmap=true&image=true&" + "&".join(f"x{i}={i}" for i in range(40))


def test_plain_lines_when_not_a_terminal() -> None:
    stream = io.StringIO()
    handler = log_handler(Console(file=stream, width=80))
    assert not isinstance(handler, RichHandler)
    logger = logging.getLogger("pneumoscan.test_console")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning('127.0.0.1:5000 - "POST %s HTTP/1.1" 413', URL)
        try:
            raise ValueError("first line\nsecond line")
        except ValueError:
            logger.exception("unexpected error")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2  # two records, two lines, however long
    assert lines[0].endswith(f'WARNING pneumoscan.test_console: 127.0.0.1:5000 - "POST {URL} '
                             'HTTP/1.1" 413')
    assert len(lines[0]) > 300
    assert "ERROR pneumoscan.test_console: unexpected error\\nTraceback" in lines[1]
    assert lines[1].endswith("ValueError: first line\\nsecond line")


def test_rich_on_a_terminal() -> None:
    handler = log_handler(Console(file=io.StringIO(), force_terminal=True))
    assert isinstance(handler, RichHandler)


def test_the_cli_logs_plain_lines_into_a_pipe() -> None:
    """The CLI's own set-up, its stderr a pipe (as under systemd, docker or ``2> file``)."""
    code = ("import logging; from pneumoscan.cli.console import configure_logging; "
            "configure_logging(); "
            f"logging.getLogger('uvicorn.access').info('GET %s 200', {URL!r})")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=120)
    assert done.stderr.splitlines() == [done.stderr.strip()]
    assert done.stderr.strip().endswith(f"INFO uvicorn.access: GET {URL} 200")


def test_plain_lines_follow_a_replaced_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    """The handler writes to whatever ``sys.stderr`` is now (a test runner swaps it)."""
    handler = log_handler(Console(stderr=True, force_terminal=False))
    record = logging.LogRecord("pneumoscan", logging.INFO, __file__, 1, "hello", None, None)
    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    handler.handle(record)
    first.close()
    monkeypatch.setattr(sys, "stderr", second)
    handler.handle(record)
    assert second.getvalue().endswith("INFO pneumoscan: hello\n")
