"""Make a voice from recordings in one go: fetch, prepare-audio, transcribe, review, train-lora, evaluate.

  voicelab-voice NAME SOURCE... [--no-review] [step flags]
  make voice NAME=alice SOURCE="recordings/alice/ https://www.youtube.com/watch?v=..."

SOURCE is a folder of recordings, audio files, or http(s) URLs (their audio is fetched with yt-dlp); all
of it is gathered in RAW_DIR/NAME/. Then the same steps as the separate commands run, with the flags given
here under their own names (below, by step; where two steps use one name for different things, the
Whisper ones are --whisper-model, --whisper-backend, --whisper-batch-size, --whisper-temperature).

Before training it stops once so that you can review the transcripts (the studio's Dataset review, or
prepared/NAME/transcript_review.csv); rerun the same command to go on, or pass --no-review. A rerun skips
every step that is done for the same input, and after Ctrl-C or a crash resumes at the step that did not
finish (training from its last checkpoint). The last lines say where the voice is, its evaluation
verdict, and how to serve it.

Exit codes: 0 done (or stopped for review), 1 a step failed, 2 bad arguments or input, 130 interrupted.

For programs (the studio uses them, so its server never loads the steps' code):
  voicelab-voice --describe-options        every step flag offered here, as JSON (flag, steps, help,
                                           defaults, kind), and the steps in order
  voicelab-voice --check-flags FLAG...     the steps' own checks of these flags only (exit 0, or 2 and why)
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from dataclasses import replace

from voicelab import progress
from voicelab.cli.common import EXIT_INTERRUPTED, EXIT_OK, HelpFormatter, run_step, setup_logging
from voicelab.options import add_options, from_args

OWN_FLAGS = ("--raw-dir", "--prepared-dir", "--voices-dir", "--no-review", "--retrain", "--server")


OWN_FIELDS = (
    "name",
    "sources",
    "raw_dir",
    "prepared_dir",
    "voices_dir",
    "review",
    "retrain",
    "server",
    "no_progress",
)
"""The ``VoiceRequest`` fields in the order --help lists their flags (then --progress-file and -v); each
flag, default and help is declared on its field (``cli/pipeline/request.py``)."""


def build_parser(pass_options=None) -> argparse.ArgumentParser:
    from voicelab.cli.pipeline import options as opts
    from voicelab.cli.pipeline.request import VoiceRequest

    p = argparse.ArgumentParser(prog="voicelab-voice", description=__doc__, formatter_class=HelpFormatter)
    add_options(p, VoiceRequest, OWN_FIELDS)
    progress.add_argument(p)
    add_options(p, VoiceRequest, ["verbose"])
    options = pass_options if pass_options is not None else opts.collect(OWN_FLAGS)
    opts.add_to_parser(p, options)
    return p


def check_flags_only(flags: list[str], pass_options) -> int:
    """``--check-flags``: the flags' types, each step's own checks, the training device; no work."""
    from voicelab.cli.pipeline import options as opts
    from voicelab.cli.pipeline.run import check_flags, check_training_device

    passed = opts.parse_flags(flags, pass_options)
    check_flags(pass_options, passed)
    check_training_device(opts.step_argv(opts.TRAIN, pass_options, passed))
    return EXIT_OK


def request_from_args(args: argparse.Namespace, pass_options):
    from voicelab.cli.pipeline import options as opts
    from voicelab.cli.pipeline.request import VoiceRequest

    return replace(from_args(VoiceRequest, args), passed=opts.given(args), options=pass_options)


def main(argv: list[str] | None = None) -> int:
    from voicelab.cli.pipeline import options as opts

    argv = list(sys.argv[1:] if argv is None else argv)
    pass_options = opts.collect(OWN_FLAGS)
    if argv[:1] == [opts.DESCRIBE_FLAG]:
        print(json.dumps({"options": opts.describe(pass_options), "steps": list(opts.PIPELINE_STEPS)}))
        return EXIT_OK
    if argv[:1] == [opts.CHECK_FLAG]:
        return run_step(lambda: check_flags_only(argv[1:], pass_options))
    args = build_parser(pass_options).parse_args(argv)
    # Ctrl-C (or the studio's Cancel, which sends SIGINT) must stop a step cleanly even when this process
    # was started with SIGINT ignored, as a background job of a shell or a service is.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return _run(args, pass_options)
    finally:
        signal.signal(signal.SIGINT, previous)


def _run(args: argparse.Namespace, pass_options) -> int:
    setup_logging(args.verbose)
    progress.configure(args.progress_file, "voice")
    outcome: dict = {}

    def body() -> int:
        from voicelab.cli.pipeline.run import make_voice

        result = make_voice(request_from_args(args, pass_options))
        outcome["result"] = result
        print(format_result(result))
        return result.exit_code

    code = run_step(
        body,
        verbose=args.verbose,
        on_interrupt="interrupted: every step finished so far is kept; rerun the same command to resume",
    )
    result = outcome.get("result")
    status = (
        result.status if result is not None else ("interrupted" if code == EXIT_INTERRUPTED else "failed")
    )
    progress.emit(progress.EVENT_END, step="voice", status=status, exit_code=code)
    progress.close()
    return code


def format_result(result) -> str:
    """The last lines: what happened, where the voice is, its evaluation verdict, how to serve it."""
    from voicelab.cli.pipeline.run import FAILED, INTERRUPTED, PAUSED

    req = result.request
    if result.nothing_done:
        lines = ["nothing to do: every step was done before for these recordings and flags"]
    else:
        lines = [f"voicelab-voice {req.name}:"]
        lines += [f"  {r.step}: {r.status}{f' ({r.note})' if r.note else ''}" for r in result.reports]
    last = result.last
    if last is not None and last.status == PAUSED:
        lines += _review_lines(req)
    elif last is not None and last.status == INTERRUPTED:
        lines.append(
            f"interrupted during {last.step}: rerun the same command to resume there (the steps done are "
            "skipped; training goes on from its last checkpoint)"
        )
    elif last is not None and last.status == FAILED and last.step != "reload":
        lines.append(
            f"stopped at {last.step}: fix what the message above says and rerun the same command; the steps "
            "done so far are kept and skipped"
        )
    elif result.voice_ready:
        lines += _ready_lines(result)
    return "\n".join(lines)


def _review_lines(req) -> list[str]:
    from voicelab.dataset import PreparedDataset

    ds = PreparedDataset(req.prepared)
    where = (
        f"{req.server.rstrip('/')}/#dataset={req.name}"
        if req.server
        else "the studio's Dataset review (make dev)"
    )
    return [
        f"stopped for review: listen to the flagged clips in {where}, or read {ds.review_path} "
        f"and fix {ds.transcript_path} ({ds.excluded_path.name} leaves clips out)",
        "then rerun the same command to train (or pass --no-review next time to go straight on)",
    ]


def _ready_lines(result) -> list[str]:
    from voicelab.voice import VoiceFolder

    req = result.request
    lines = [f"voice {req.name!r} is ready: {req.voice}"]
    verdicts = result.verdicts
    if verdicts:
        failed = [check for check, verdict in verdicts.items() if verdict == "FAIL"]
        passed = sum(verdict == "pass" for verdict in verdicts.values())
        lines.append(
            f"evaluation: {passed} of {len(verdicts)} checks pass"
            + (f"; failed: {', '.join(failed)}" if failed else "")
            + f" (details: {VoiceFolder(req.voice).eval_summary_path})"
        )
    else:
        lines.append(f"evaluation: none (run `voicelab-evaluate {req.name}` to judge it)")
    lines.append(
        f"serve it: make serve (VOICELAB_VOICES_DIR={req.voices_dir}), then POST /v1/audio/speech with "
        f'"voice": "{req.name}"; a server already running picks it up with POST /v1/voices/reload'
    )
    return lines


if __name__ == "__main__":
    sys.exit(main())
