"""Options declared once: a dataclass field carries its command-line flag, help and argparse details, its
default is the flag's default, and a command builds its parser from the fields and its settings object
from the parsed flags.

    @dataclass(frozen=True)
    class Settings:
        batch_size: int = option("--batch-size", type=positive_int, help="clips per step", default=1)

    add_options(parser, Settings, ["batch_size"])   # the flags, in the order the help lists them
    settings = from_args(Settings, parser.parse_args(argv))

A field whose default is another such dataclass (``field(default_factory=LoraSettings)``) is reached by a
dotted name (``"lora.rank"``), and ``from_args`` builds it too. A switch that turns something off is a
``store_false`` flag on the field that holds the positive (``use_cache`` <- ``--no-cache``). Only stdlib
imports here: ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Iterable
from typing import Any

FLAG = "voicelab.flag"
"""Key of a field's ``metadata`` holding its ``Flag``."""
TAKES_NO_VALUE = {"store_true", "store_false", "store_const", "count"}
MAX_PORT = 2**16 - 1


@dataclasses.dataclass(frozen=True)
class Flag:
    names: tuple[str, ...]
    """``("--batch-size",)``, ``("-v", "--verbose")``, or one positional name (its metavar)."""
    help: str
    argparse: dict[str, Any]
    """Further ``add_argument`` keywords: type, choices, action, metavar, nargs."""
    unset: Any = dataclasses.MISSING
    """The flag's own default where it is not the field's (see ``option``)."""


def option(
    *names: str,
    help: str,
    default: Any = dataclasses.MISSING,
    unset: Any = dataclasses.MISSING,
    **argparse_kwargs: Any,
):
    """A dataclass field with a command-line flag: ``names`` and ``help`` as ``add_argument`` takes them,
    ``default`` the field's default (and so the flag's).

    ``unset`` (usually None): the flag's default instead, where a check must tell a flag given from one
    left out, or the help must not show the field's default; ``from_args`` leaves the field's default
    where the flag kept it."""
    return dataclasses.field(default=default, metadata={FLAG: Flag(names, help, argparse_kwargs, unset)})


def _field(cls: type, dotted: str) -> tuple[dataclasses.Field, str]:
    """The field a dotted name reaches (``"lora.rank"``), and that name as the argparse ``dest``."""
    *outer, last = dotted.split(".")
    for name in outer:
        cls = _fields(cls)[name].default_factory
    return _fields(cls)[last], dotted


def _fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def add_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type, names: Iterable[str]):
    """Add the flags of ``cls``'s fields ``names`` to ``parser``, in that order."""
    for dotted in names:
        f, dest = _field(cls, dotted)
        flag: Flag = f.metadata[FLAG]
        kwargs = dict(flag.argparse)
        if flag.unset is not dataclasses.MISSING:
            kwargs["default"] = flag.unset
        elif f.default is not dataclasses.MISSING:
            kwargs["default"] = f.default
        if not flag.names[0].startswith("-"):  # a positional: its dest is the field, its name the metavar
            parser.add_argument(dest, metavar=flag.names[0], help=flag.help, **kwargs)
            continue
        takes_value = kwargs.get("action") not in TAKES_NO_VALUE
        if takes_value and "metavar" not in kwargs and "choices" not in kwargs:
            kwargs["metavar"] = flag.names[-1].lstrip("-").replace("-", "_").upper()  # as argparse names it
        parser.add_argument(*flag.names, dest=dest, help=flag.help, **kwargs)


def from_args(cls: type, args: argparse.Namespace, prefix: str = ""):
    """``cls`` built from the parsed flags: each field added by ``add_options`` takes its parsed value,
    nested dataclasses are built the same way, every other field (and one whose flag kept its ``unset``
    default) keeps its default."""
    values = {}
    for f in dataclasses.fields(cls):
        dest = prefix + f.name
        flag = f.metadata.get(FLAG)
        if dataclasses.is_dataclass(f.default_factory):
            values[f.name] = from_args(f.default_factory, args, dest + ".")
        elif hasattr(args, dest) and not (flag and getattr(args, dest) is flag.unset):
            values[f.name] = getattr(args, dest)
    return cls(**values)


# --- flag value types (argparse ``type=``) ---------------------------------------------------------
def int_at_least(text: str, lower: int) -> int:
    """An integer >= ``lower``, or ``argparse.ArgumentTypeError`` saying what was wrong."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < lower:
        raise argparse.ArgumentTypeError(f"must be >= {lower}, got {value}")
    return value


def positive_int(text: str) -> int:
    """argparse ``type=`` for counts and sizes: an integer >= 1."""
    return int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """argparse ``type=`` for counts where 0 means "none": an integer >= 0."""
    return int_at_least(text, 0)


def port_number(text: str) -> int:
    """argparse ``type=`` for a TCP port: 1-65535."""
    value = positive_int(text)
    if value > MAX_PORT:
        raise argparse.ArgumentTypeError(f"a port is 1-{MAX_PORT}, got {value}")
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
