"""Options declared once (``voicelab.options``): the flag types, a flag whose own default says "not given",
and every command's --help staying light (no numpy, no torch: it must answer at once)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass
from importlib.metadata import entry_points

import pytest

from voicelab.options import add_options, from_args, non_negative_int, option, port_number, positive_int

HEAVY = ("numpy", "torch", "transformers")


def command_modules() -> list[str]:
    """The module of every console command voicelab installs, and make dev's check_server."""
    commands = {e.module for e in entry_points(group="console_scripts") if e.module.startswith("voicelab.")}
    return sorted(commands | {"voicelab.cli.check_server"})


@pytest.mark.parametrize("module", command_modules())
def test_every_commands_help_imports_no_numpy_or_torch(module):
    code = (
        "import sys\n"
        f"from {module} import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "usage:" in proc.stdout
    assert proc.stdout.splitlines()[-1] == "[]", f"{module} --help imports {proc.stdout.splitlines()[-1]}"


@pytest.mark.parametrize(
    "kind, text, message",
    [
        (positive_int, "0", "must be >= 1, got 0"),
        (positive_int, "2.5", "expected a whole number, got '2.5'"),
        (non_negative_int, "-1", "must be >= 0, got -1"),
        (non_negative_int, "many", "expected a whole number, got 'many'"),
        (port_number, "65536", "a port is 1-65535, got 65536"),
    ],
)
def test_flag_types_refuse_with_a_message_naming_the_value(kind, text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=f"^{message}$"):
        kind(text)


def test_flag_types_accept_their_bounds():
    assert (positive_int("1"), non_negative_int("0"), port_number("65535")) == (1, 0, 65535)


@dataclass(frozen=True)
class Tuning:
    threshold: float = option("--threshold", type=float, default=0.75, unset=None, help="with --keep only")
    keep: bool = option("--keep", action="store_true", default=False, help="keep")


def parse(*argv: str) -> tuple[argparse.Namespace, Tuning]:
    parser = argparse.ArgumentParser()
    add_options(parser, Tuning, ["threshold", "keep"])
    args = parser.parse_args(argv)
    return args, from_args(Tuning, args)


def test_a_flag_left_out_keeps_the_fields_default_and_says_it_was_not_given():
    args, tuning = parse()
    assert args.threshold is None  # a check can tell "not given" ...
    assert tuning.threshold == 0.75  # ... and the settings still hold the field's default


def test_a_flag_given_its_default_value_is_still_seen_as_given():
    args, tuning = parse("--threshold", "0.75", "--keep")
    assert args.threshold == 0.75 and tuning == Tuning(threshold=0.75, keep=True)
