"""Which flag of ``voicelab-voice`` goes to which step: the one place that says so.

The steps' flags are not declared again here: each step's own parser (``build_parser()`` of its command)
is read, and every optional flag it has is offered by ``voicelab-voice`` under the step's own name, with
the step's help, type and choices. A flag added to a step later is passed through without a change here.
This module only lists the exceptions:

* ``Step.set_by_pipeline``: flags the pipeline decides itself (paths, ``--resume``, ``--overwrite``);
* ``Step.renamed``: a step's flag offered under another name, where two steps use one name for two things
  (transcribe's ``--model`` is the Whisper model: ``--whisper-model``, as evaluate already calls it);
* ``SHARED``: names that mean the same in every step that has them (``--device``, ``--base-model``...):
  the value goes to each of those steps;
* ``PIPELINE_FLAGS``: ``voicelab-voice``'s own flags that it hands on to every step that has them.

A name two steps use that none of these lists settles is offered once per step, prefixed with the step
(``--train-lora-foo``, ``--evaluate-foo``), and ``tests/test_voice_options.py`` fails until it is listed.
Only the flags a user gives are passed on; a step's own default applies to every other flag.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voicelab.errors import UsageError


@dataclass(frozen=True)
class Step:
    name: str
    """As the user knows it (the make target)."""
    module: str
    """The command module: ``build_parser()`` and ``main(argv) -> int``."""
    set_by_pipeline: frozenset[str] = frozenset()
    renamed: dict[str, str] = field(default_factory=dict)


PREPARE = Step("prepare-audio", "voicelab.cli.prepare_audio", frozenset({"--overwrite"}))
TRANSCRIBE = Step(
    "transcribe",
    "voicelab.cli.transcribe",
    frozenset({"--output", "--overwrite"}),
    renamed={
        "--model": "--whisper-model",
        "--backend": "--whisper-backend",
        "--batch-size": "--whisper-batch-size",  # train-lora's --batch-size is clips per step
        "--temperature": "--whisper-temperature",  # evaluate's --temperature samples the voice
        "--tags": "--whisper-tags",  # evaluate's --tags lists the tags its tags check speaks
        # prepare-audio's --speaker-threshold keeps or drops a stretch (with --reference/--speaker auto only);
        # transcribe's flags a clip in the review
        "--speaker-threshold": "--review-speaker-threshold",
    },
)
TRAIN = Step("train-lora", "voicelab.cli.train_lora", frozenset({"--transcript", "--resume", "--overwrite"}))
EVALUATE = Step("evaluate", "voicelab.cli.evaluate_voice", frozenset({"--all", "--compare", "--dataset-dir"}))
STEPS: tuple[Step, ...] = (PREPARE, TRANSCRIBE, TRAIN, EVALUATE)
FETCH, REVIEW, RELOAD = "fetch", "review", "reload"
PIPELINE_STEPS = (FETCH, PREPARE.name, TRANSCRIBE.name, REVIEW, TRAIN.name, EVALUATE.name, RELOAD)
"""Everything ``voicelab-voice`` does, in order: the steps above and its own (fetch, the stop for review,
the reload of a running server)."""

SHARED = frozenset(
    {
        "--device",  # prepare-audio (separation), transcribe, train-lora, evaluate: the torch device of each
        "--base-model",  # train-lora, evaluate
        "--snac-model",  # train-lora, evaluate
        "--whisper-model",  # transcribe (--model), evaluate
        "--whisper-backend",  # transcribe (--backend), evaluate
        "--language",  # transcribe, evaluate
        "--seed",  # train-lora (initialisation, data order, held-out clips), evaluate (sampling)
        "--reference",  # prepare-audio, transcribe: recordings of the character
    }
)
PIPELINE_FLAGS = frozenset({"--voices-dir", "--verbose", "--no-progress", "--progress-file"})
"""``voicelab-voice``'s own flags, handed to every step that has a flag of that name."""

DESCRIBE_FLAG = "--describe-options"
CHECK_FLAG = "--check-flags"
"""``voicelab-voice``'s modes for programs: the option table as JSON; the steps' checks of some flags."""

GIVEN = "passed_through"
"""Namespace attribute: pipeline flag -> the values of each time it was given (raw strings)."""


@dataclass
class PassOption:
    """One flag ``voicelab-voice`` offers on behalf of one or more steps."""

    flag: str
    """The name ``voicelab-voice`` takes."""
    targets: dict[str, str]
    """Step name -> that step's own name for it."""
    actions: dict[str, argparse.Action]
    """Step name -> the step parser's action (help, type, default, choices)."""

    @property
    def first(self) -> argparse.Action:
        return next(iter(self.actions.values()))

    @property
    def is_switch(self) -> bool:
        return self.first.nargs == 0

    def defaults(self) -> dict[str, Any]:
        return {step: _jsonable(a.default) for step, a in self.actions.items()}


def long_flag(action: argparse.Action) -> str:
    return next((s for s in action.option_strings if s.startswith("--")), action.option_strings[0])


def step_parser(step: Step) -> argparse.ArgumentParser:
    return importlib.import_module(step.module).build_parser()


def _step_flags(step: Step, parser: argparse.ArgumentParser) -> list[tuple[str, argparse.Action]]:
    """The step's optional flags the pipeline passes through: (the step's own name, action)."""
    found = []
    for action in parser._actions:  # argparse has no public list of a parser's arguments
        if not action.option_strings or isinstance(action, argparse._HelpAction):
            continue
        flag = long_flag(action)
        if flag not in step.set_by_pipeline and flag not in PIPELINE_FLAGS:
            found.append((flag, action))
    return found


def collect(own_flags: Iterable[str] = (), parsers: dict[str, argparse.ArgumentParser] | None = None):
    """Every flag offered on behalf of the steps, in step order; clashes resolved as the module says.

    ``own_flags``: the pipeline's own flags (a step flag of that name is prefixed, as any unsettled clash).
    """
    parsers = parsers or {s.name: step_parser(s) for s in STEPS}
    wanted: dict[str, list[tuple[Step, str, argparse.Action]]] = {}
    for step in STEPS:
        for flag, action in _step_flags(step, parsers[step.name]):
            wanted.setdefault(step.renamed.get(flag, flag), []).append((step, flag, action))
    own = set(own_flags)
    options: list[PassOption] = []
    for name, users in wanted.items():
        settled = name in SHARED or (len(users) == 1 and name not in own)
        if settled:
            options.append(
                PassOption(name, {s.name: f for s, f, _ in users}, {s.name: a for s, _, a in users})
            )
            continue
        for step, flag, action in users:  # an unsettled clash: one flag per step, named after it
            options.append(PassOption(f"--{step.name}-{name[2:]}", {step.name: flag}, {step.name: action}))
    return options


def unsettled_clashes(own_flags: Iterable[str] = ()) -> list[str]:
    """Flags offered under a step-prefixed name because this module does not settle their clash."""
    prefixes = tuple(f"--{s.name}-" for s in STEPS)
    return [o.flag for o in collect(own_flags) if o.flag.startswith(prefixes)]


# --- the parser ---------------------------------------------------------------------------------------
class _PassThrough(argparse.Action):
    """Records the raw strings the user gave (checked with the step's own type) under ``GIVEN``."""

    def __call__(self, parser, namespace, values, option_string=None):
        given = dict(getattr(namespace, GIVEN, None) or {})
        raw = [] if values is None else [values] if isinstance(values, str) else list(values)
        given[self.dest] = [*given.get(self.dest, []), raw]
        setattr(namespace, GIVEN, given)


def _checked_by(kind: Callable | None) -> Callable[[str], str] | None:
    """argparse ``type=`` that validates with the step's type and keeps the string as typed."""
    if kind is None:
        return None

    def check(text: str) -> str:
        kind(text)
        return text

    check.__name__ = getattr(kind, "__name__", "value")  # argparse names the type in its message
    return check


def _help(option: PassOption) -> str:
    first = option.first
    text = (first.help or "").rstrip()
    steps = ", ".join(option.targets)
    if len(option.actions) > 1:
        return f"{text} [{steps}; each step's own default]"
    default = first.default
    unshown = default is None or default is False or default is argparse.SUPPRESS or default == ()
    shown = "" if unshown or "default" in text else f"; default {default}"
    return f"{text} [{steps}{shown.replace('%', '%%')}]"


def add_to_parser(parser: argparse.ArgumentParser, options: Sequence[PassOption]) -> None:
    """One argument group per step, each flag under the name ``voicelab-voice`` offers."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for option in options:
        step = next(iter(option.targets))
        if step not in groups:
            groups[step] = parser.add_argument_group(f"{step} options (as in voicelab-{step} --help)")
        first = option.first
        choices = first.choices if first.choices and all(isinstance(c, str) for c in first.choices) else None
        kwargs: dict[str, Any] = {
            "dest": option.flag,
            "default": argparse.SUPPRESS,
            "help": _help(option),
            "nargs": first.nargs,
        }
        if first.nargs != 0:
            kwargs |= {
                "type": _checked_by(first.type),
                "choices": choices,
                "metavar": first.metavar or first.dest.upper(),
            }
        groups[step].add_argument(option.flag, action=_PassThrough, **kwargs)


def settings_to_argv(values: dict[str, Any], described: Sequence[dict[str, Any]]) -> list[str]:
    """Settings as the studio sends them (flag -> true/false, a value, or a list of values) as arguments,
    by the options ``describe`` lists; ``StepFlagsError`` for a flag not offered or a value of the wrong
    kind. Pure: the values themselves are checked by the steps (``voicelab-voice --check-flags``)."""
    kinds = {d["flag"]: d["kind"] for d in described}
    argv: list[str] = []
    for flag, value in values.items():
        kind = kinds.get(flag)
        if kind is None:
            raise StepFlagsError(f"{flag}: no such setting (the New voice page lists them)")
        if kind == "switch":
            if not isinstance(value, bool):
                raise StepFlagsError(f"{flag}: true or false, got {value!r}")
            argv += [flag] if value else []
        elif isinstance(value, list) and kind == "values":
            argv += [flag, *map(str, value)] if value else []
        elif isinstance(value, str | int | float) and not isinstance(value, bool):
            argv += [flag, str(value)] if str(value).strip() else []
        else:
            wanted = "a list of values" if kind == "values" else "one value"
            raise StepFlagsError(f"{flag}: expected {wanted}, got {value!r}")
    return argv


def parse_flags(argv: Sequence[str], options: Sequence[PassOption]) -> dict[str, list[list[str]]]:
    """Pass-through flags alone (no NAME, no SOURCE), checked with the steps' types: what ``given``
    returns for them. ``StepFlagsError`` names a bad one."""
    parser = argparse.ArgumentParser(prog="voicelab-voice", add_help=False)

    def refuse(message: str):
        raise StepFlagsError(message)

    parser.error = refuse
    add_to_parser(parser, options)
    return given(parser.parse_args(list(argv)))


def given(args: argparse.Namespace) -> dict[str, list[list[str]]]:
    return dict(getattr(args, GIVEN, None) or {})


def step_argv(step: Step, options: Sequence[PassOption], passed: dict[str, list[list[str]]]) -> list[str]:
    """The flags of ``step`` the user gave, spelt as the step spells them (in ``voicelab-voice``'s order)."""
    argv: list[str] = []
    for option in options:
        own = option.targets.get(step.name)
        for values in passed.get(option.flag, []) if own else []:
            argv += [own, *values]
    return argv


class StepFlagsError(UsageError):
    """A flag value the step's own parser or range checks refuse."""


def check_step_argv(step: Step, argv: Sequence[str]) -> None:
    """Parse ``argv`` with the step's own parser and range checks now, so a bad value stops the run
    before hours of earlier steps; ``StepFlagsError`` carries the step's own message."""
    module = importlib.import_module(step.module)
    parser = module.build_parser()

    def refuse(message: str):
        raise StepFlagsError(f"{step.name}: {message}")

    parser.error = refuse  # argparse and the step's check_args report through error()
    args = parser.parse_args(list(argv))
    if hasattr(module, "request_from_args"):  # train-lora checks the request its flags describe
        args = module.request_from_args(args)
    if hasattr(module, "check_args"):
        module.check_args(parser, args)


def describe(options: Sequence[PassOption]) -> list[dict[str, Any]]:
    """The options as the studio's New voice page shows them: flag, steps, help, defaults, kind."""
    described = []
    for option in options:
        first = option.first
        kind = "switch" if option.is_switch else "values" if first.nargs in ("+", "*") else "value"
        choices = [str(c) for c in first.choices] if first.choices else None
        described.append(
            {
                "flag": option.flag,
                "steps": list(option.targets),
                "help": (first.help or "").replace("%%", "%"),
                "defaults": option.defaults(),
                "kind": kind,
                "choices": choices,
                "metavar": first.metavar or first.dest.upper(),
            }
        )
    return described


def _jsonable(value: Any) -> Any:
    if value is argparse.SUPPRESS:
        return None
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    return value
