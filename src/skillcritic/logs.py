"""Logging: rich console output on stderr (stdout carries only a command's result)."""

from __future__ import annotations

import logging
import sys

from rich.console import Console
from rich.logging import RichHandler

# Piped output (CI, log files) gets long lines instead of rich's 80-column default.
_STDERR = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


def stderr_console() -> Console:
    """The shared rich console on stderr, for log lines and progress bars alike."""
    return _STDERR


def console_handler() -> logging.Handler:
    """A rich log handler on stderr (used by the Hydra job-logging config)."""
    return RichHandler(console=_STDERR, show_path=False, rich_tracebacks=False, markup=False)
