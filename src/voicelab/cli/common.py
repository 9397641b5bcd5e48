"""Small helpers shared by the command-line scripts in scripts/: exit codes, argparse types, help format."""

from __future__ import annotations

import argparse
import logging
import math

EXIT_OK = 0
EXIT_FAILURE = 1
"""The work itself failed (or some items did)."""
EXIT_USAGE = 2
"""Bad invocation or unusable input (argparse's own code for usage errors)."""
EXIT_INTERRUPTED = 130
"""Ctrl-C: 128 + SIGINT, the shell convention."""


def positive_int(text: str) -> int:
    """argparse ``type=`` for counts and sizes: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """argparse ``type=`` for counts where 0 means "none": an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse ``type=`` for durations and other amounts: a finite number > 0 (``nan``/``inf`` refused)."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def finite_float(text: str) -> float:
    """argparse ``type=`` for a float that must be a real number: ``float()`` alone accepts nan and inf."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def setup_logging(verbose: bool) -> None:
    """Warnings and errors as ``LEVEL: message``; ``-v`` adds voicelab's own INFO/DEBUG detail only
    (third-party debug logs would drown it)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    if verbose:
        logging.getLogger("voicelab").setLevel(logging.DEBUG)


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the description's line breaks and shows each flag's default, unless the help text already
    explains it or there is none to show (a switch's ``False`` says nothing)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, argparse.SUPPRESS) or action.default is False or "default" in text:
            return text
        return super()._get_help_string(action)
