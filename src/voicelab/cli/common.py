"""What every command shares: the exit-code contract, the help format, logging set-up (the flag types
live in ``voicelab.options``).

Exit codes, the same for every step: 0 done; 1 the work (or some items) failed; 2 bad arguments or unusable
input, the message says the fix (``UsageError``); 130 interrupted (Ctrl-C). ``run_step`` applies them, so
no command ever ends in a Python traceback unless ``-v`` asks for it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from voicelab.errors import UsageError

EXIT_OK = 0
EXIT_FAILURE = 1
"""The work itself failed (or some items did)."""
EXIT_USAGE = 2
"""Bad invocation or unusable input (argparse's own code for usage errors)."""
EXIT_INTERRUPTED = 130
"""Ctrl-C: 128 + SIGINT, the shell convention."""


CLI_LOG_FORMAT = "%(levelname)s: %(message)s"
SERVER_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


LIBRARY_LOGGERS_WITH_OWN_HANDLER = ("huggingface_hub",)
"""Libraries that print through a handler of their own and also pass each record up to the root logger:
under our root handler every one of their warnings would appear twice."""


def setup_logging(
    verbose: bool = False, *, level: str | int | None = None, fmt: str = CLI_LOG_FORMAT
) -> None:
    """The one logging set-up of every command and the server.

    voicelab's own messages at INFO (``-v``: DEBUG, or ``level`` when given, e.g. the server's
    ``VOICELAB_LOG_LEVEL``); other libraries' at WARNING, since their debug output would drown ours. One
    handler on the root logger, added once (uvicorn and pytest keep theirs); a library that has its own
    handler keeps it, and stops passing its records to ours (each message once).
    """
    root = logging.getLogger()
    if not root.handlers:  # else someone (uvicorn's --log-config, pytest) already decided where logs go
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(fmt))
        root.addHandler(handler)
        root.setLevel(logging.WARNING)
        for name in LIBRARY_LOGGERS_WITH_OWN_HANDLER:
            logging.getLogger(name).propagate = False
    if level is None:
        level = logging.DEBUG if verbose else logging.INFO
    logging.getLogger("voicelab").setLevel(level)


def run_step(body: Callable[[], int], *, verbose: bool = False, on_interrupt: str = "interrupted") -> int:
    """Run a command's work with the exit-code contract (module docstring): one line on stderr per failure.

    ``on_interrupt`` is printed on Ctrl-C (say what was kept and how to continue). ``-v`` adds the
    traceback of an unexpected failure.
    """
    try:
        return body()
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"\n{on_interrupt}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as e:  # disk full, permissions changed mid-run, a folder removed under us
        where = f": {e.filename}" if e.filename else ""
        print(f"error: {e.strerror or e}{where}", file=sys.stderr)
        if verbose:
            traceback.print_exc()
        return EXIT_FAILURE
    except Exception as e:
        print(f"error: {type(e).__name__}: {e} (rerun with -v for the traceback)", file=sys.stderr)
        if verbose:
            traceback.print_exc()
        return EXIT_FAILURE


def _probe(folder: Path, flag: str, path: Path) -> None:
    from voicelab.fileio import probe_writable

    try:
        probe_writable(folder)
    except OSError as e:
        raise UsageError(f"{flag} {path}: cannot write there ({e.strerror}); choose a writable place") from e


def require_output_dir(path: Path, flag: str) -> Path:
    """An output folder that exists (made now if needed) and can be written; else ``UsageError`` naming it.

    Checked before any work so that a read-only or mistyped output fails in a second, not after an hour:
    by writing a file there (``fileio.probe_writable``), since permission bits do not tell root the truth.
    """
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {path} is a file; give a folder (it will be created if missing)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"{flag} {path}: cannot create it ({e.strerror}); choose a writable place") from e
    _probe(path, flag, path)
    return path


def require_output_file(path: Path, flag: str) -> Path:
    """A file path whose folder exists and can be written, and which is not a folder itself."""
    from voicelab.dataset import TRANSCRIPT_FILE

    if path.is_dir():
        raise UsageError(f"{flag} {path} is a folder; give a file path (e.g. {path / TRANSCRIPT_FILE})")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise UsageError(f"{flag} {path}: folder {folder} does not exist")
    if path.exists() and not os.access(path, os.W_OK):
        raise UsageError(f"{flag} {path}: not writable; fix the permissions or choose another path")
    _probe(folder, flag, path)
    return path


def require_local_model(
    value: str, flag: str, what: str, *, folder: bool = False, missing_ok: bool = False
) -> None:
    """A ``value`` that looks like a local path must exist (and be a folder when ``folder``); hub errors
    about such a value only confuse, and a file passed for a folder would be looked up on the hub.
    ``missing_ok``: a path that is not there is left to the caller's own check (the base model's shared
    message, ``models.check_base_model_source``)."""
    from voicelab.models import looks_like_local_path

    path = Path(value).expanduser()
    if looks_like_local_path(value) and not path.exists() and not missing_ok:
        raise UsageError(f"{flag} {value}: no such {what} (pass a local {what}, or a hub id / model name)")
    if folder and path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {value} is a file; pass the {what} holding the model's files, or a hub id")


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the description's line breaks and shows each flag's default, unless the help text already
    explains it or there is none to show (a switch's ``False``, or the ``True`` of a ``--no-X`` switch,
    says nothing)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        switch = action.nargs == 0 and isinstance(action.default, bool)
        if (
            action.default in (None, argparse.SUPPRESS)
            or action.default is False
            or switch
            or "default" in text
        ):
            return text
        return super()._get_help_string(action)
