"""The steps of ``voicelab-voice`` in order, each one the command a user would run, skipped when done.

fetch -> prepare-audio -> transcribe -> review (a stop, unless --no-review) -> train-lora -> evaluate ->
reload (of a running server, when ``--server`` names one). Each data step is its command's own ``main``
called with the arguments a user would type (``options`` builds them), so there is one implementation of
each step and the same exit codes. ``state`` remembers what each finished step read; a rerun skips the
steps whose input is unchanged and resumes training from its checkpoint after Ctrl-C or a crash.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voicelab import progress
from voicelab.cli.common import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK
from voicelab.cli.pipeline import options as opts
from voicelab.cli.pipeline import sources as src
from voicelab.cli.pipeline.request import VoiceRequest
from voicelab.cli.pipeline.state import PipelineState, exclusive, file_digest, listing, signature
from voicelab.errors import UsageError

logger = logging.getLogger(__name__)

FETCH, REVIEW, RELOAD = opts.FETCH, opts.REVIEW, opts.RELOAD
STEP_ORDER = opts.PIPELINE_STEPS
RELOAD_TIMEOUT_S = 120.0
"""A reload loads every new adapter into the engine: seconds on a GPU, longer on a loaded CPU."""

DONE, SKIPPED, PAUSED, FAILED, INTERRUPTED = "done", "skipped", "paused", "failed", "interrupted"


class NameTakenError(UsageError):
    """``voices/NAME`` exists but was not made by this pipeline."""


@dataclass
class StepReport:
    step: str
    status: str
    exit_code: int = EXIT_OK
    note: str = ""


@dataclass
class VoiceResult:
    request: VoiceRequest
    reports: list[StepReport] = field(default_factory=list)
    verdicts: dict[str, str] | None = None

    @property
    def exit_code(self) -> int:
        codes = [r.exit_code for r in self.reports if r.exit_code != EXIT_OK]
        return codes[-1] if codes else EXIT_OK

    @property
    def last(self) -> StepReport | None:
        return self.reports[-1] if self.reports else None

    @property
    def paused(self) -> bool:
        return self.last is not None and self.last.status == PAUSED

    @property
    def nothing_done(self) -> bool:
        return bool(self.reports) and all(r.status == SKIPPED for r in self.reports)

    @property
    def voice_ready(self) -> bool:
        from voicelab.voice import VoiceFolder

        return VoiceFolder(self.request.voice).has_adapter() and not self.paused

    @property
    def status(self) -> str:
        """How the run ended, as the last progress event says: done (every step ran; exit code 1 when some
        recordings or clips failed and were left out), review, failed or interrupted."""
        if self.exit_code == EXIT_INTERRUPTED:
            return INTERRUPTED
        if self.paused:
            return "review"
        finished = self.last is not None and self.last.step == RELOAD
        return DONE if finished or self.exit_code == EXIT_OK else FAILED


# --- checks before anything is written ----------------------------------------------------------------
def step_argvs(req: VoiceRequest) -> dict[str, list[str]]:
    """Each step's flags as the user gave them, spelt the step's way."""
    return {step.name: opts.step_argv(step, req.options, req.passed) for step in opts.STEPS}


def preflight(req: VoiceRequest, state: PipelineState) -> src.Sources:
    """Every check that needs no model: the name, the sources, a voice of that name, each step's flags."""
    from voicelab.voice import validate_voice_name

    validate_voice_name(req.name)
    sources = src.classify(req.sources)
    if req.voice.exists() and not _made_from(req.voice, req.prepared):
        raise NameTakenError(
            f"a voice named {req.name!r} already exists ({req.voice}) and was not made from these recordings "
            "by voicelab-voice: choose another NAME (or remove that folder to replace it)"
        )
    check_flags(req.options, req.passed)
    check_training_device(step_argvs(req)[opts.TRAIN.name])
    return sources


def check_flags(options: list[opts.PassOption], passed: dict[str, list[list[str]]]) -> None:
    """Each step's own parser and range checks on the flags it would get (``StepFlagsError``)."""
    placeholders = {
        opts.PREPARE.name: ["raw_audio/NAME", "prepared/NAME"],
        opts.TRANSCRIBE.name: ["prepared/NAME"],
        opts.TRAIN.name: ["NAME", "prepared/NAME"],
        opts.EVALUATE.name: ["NAME"],
    }
    for step in opts.STEPS:
        opts.check_step_argv(step, [*placeholders[step.name], *opts.step_argv(step, options, passed)])


def _made_from(voice_dir: Path, prepared: Path) -> bool:
    """Whether the voice in ``voice_dir`` was trained on the dataset in ``prepared`` (its voice.json says)."""
    from voicelab.voice import VoiceFolder

    try:
        recorded = VoiceFolder(voice_dir).read_metadata().dataset.get("dataset_dir")
    except (OSError, ValueError, TypeError, KeyError, UsageError):
        return False
    return recorded is not None and Path(recorded) == prepared.resolve()


def check_training_device(train_argv: list[str]) -> None:
    """train-lora's --device and --snac-device exist on this machine (else its error, now, not hours later)."""
    from voicelab.cli import train_lora
    from voicelab.training.trainer import check_device

    request = train_lora.request_from_args(train_lora.build_parser().parse_args(["x", "x", *train_argv]))
    check_device(request.train.device, "--device")
    check_device(request.snac_device, "--snac-device")


# --- running -------------------------------------------------------------------------------------------
class _Run:
    """One run: the request, its state, and what each step reported."""

    def __init__(self, req: VoiceRequest, state: PipelineState, sources: src.Sources) -> None:
        self.req, self.state, self.sources = req, state, sources
        self.result = VoiceResult(req)
        self.argvs = step_argvs(req)
        self.changed = False  # a step that makes the voice ran: the server should reload

    def common_flags(self, step: opts.Step) -> list[str]:
        """The pipeline's own flags a step has (``options.PIPELINE_FLAGS``)."""
        flags = {opts.long_flag(a) for a in opts.step_parser(step)._actions if a.option_strings}
        given = []
        if self.req.verbose and "--verbose" in flags:
            given.append("--verbose")
        if self.req.no_progress and "--no-progress" in flags:
            given.append("--no-progress")
        if self.req.progress_file is not None and progress.PROGRESS_FLAG in flags:
            given += [progress.PROGRESS_FLAG, str(self.req.progress_file)]
        if "--voices-dir" in flags:
            given += ["--voices-dir", str(self.req.voices_dir)]
        return given

    def call(self, step: opts.Step, positional: list[str], extra: list[str] = ()) -> int:
        """The step's command, as a user would run it."""
        argv = [*positional, *self.argvs[step.name], *extra, *self.common_flags(step)]
        logger.debug("%s %s", step.name, " ".join(argv))
        code = importlib.import_module(step.module).main(argv)
        _release_memory()
        return code

    def report(self, step: str, status: str, exit_code: int = EXIT_OK, note: str = "") -> StepReport:
        entry = StepReport(step, status, exit_code, note)
        self.result.reports.append(entry)
        progress.emit(progress.EVENT_STEP, step=step, status=status, exit_code=exit_code, message=note)
        if status == SKIPPED:
            logger.info("%s: %s", step, note or "done before, skipped")
        return entry


def _release_memory() -> None:
    """Models of a finished step are garbage now; give their (GPU) memory back before the next loads its own."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def _outcome(run: _Run, step: str, code: int, *, partial_ok: bool = False) -> StepReport:
    """A step's exit code as a report: 1 from a batch step that kept the good items goes on."""
    if code == EXIT_OK:
        return run.report(step, DONE)
    if code == EXIT_INTERRUPTED:
        return run.report(step, INTERRUPTED, code, "interrupted: rerun the same command to resume from here")
    if code == EXIT_FAILURE and partial_ok:
        return run.report(step, DONE, code, "some items failed (named above); the others are kept")
    return run.report(step, FAILED, code, "failed (the message above says why)")


def fetch(run: _Run) -> StepReport:
    req, state = run.req, run.state
    progress.configure(None, FETCH)  # the download's progress events are the fetch step's
    progress.emit(progress.EVENT_STEP, step=FETCH, status="started")
    req.raw.mkdir(parents=True, exist_ok=True)
    added = src.bring_local(run.sources, req.raw)
    for url in run.sources.urls:
        files = state.fetched.get(url)
        if files and all((req.raw / f).is_file() for f in files):
            continue
        logger.info("fetching %s", url)
        state.fetched[url] = src.fetch_url(url, req.raw)
        state.save()
        added += len(state.fetched[url])
    if not added:
        return run.report(FETCH, SKIPPED, note=f"recordings already in {req.raw}")
    return run.report(FETCH, DONE, note=f"{added} recording(s) added to {req.raw}")


def prepare(run: _Run) -> StepReport:
    from voicelab.audio import AUDIO_SUFFIXES

    req, step = run.req, opts.PREPARE
    files = [
        p
        for p in req.raw.rglob("*")
        if p.is_file()
        and p.suffix.lower() in AUDIO_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(req.raw).parts)
    ]
    sig = signature(listing(files, req.raw), run.argvs[step.name])
    if run.state.is_done(step.name, sig):
        return run.report(step.name, SKIPPED, note=f"the recordings are prepared in {req.prepared}")
    progress.emit(progress.EVENT_STEP, step=step.name, status="started")
    code = run.call(step, [str(req.raw), str(req.prepared)])
    if code in (EXIT_OK, EXIT_FAILURE):
        run.state.record(step.name, sig, DONE, exit_code=code)
    return _outcome(run, step.name, code, partial_ok=True)


def transcribe(run: _Run) -> StepReport:
    from voicelab.dataset import PreparedDataset

    req, step = run.req, opts.TRANSCRIBE
    sig = signature(file_digest(PreparedDataset(req.prepared).manifest_path), run.argvs[step.name])
    if run.state.is_done(step.name, sig):
        return run.report(step.name, SKIPPED, note="every clip is transcribed")
    progress.emit(progress.EVENT_STEP, step=step.name, status="started")
    code = run.call(step, [str(req.prepared)])
    if code in (EXIT_OK, EXIT_FAILURE):
        run.state.record(step.name, sig, DONE, exit_code=code)
    return _outcome(run, step.name, code, partial_ok=True)


def review(run: _Run) -> StepReport:
    """A stop, once for each set of clips, so that a person can check the transcripts before training."""
    req, state = run.req, run.state
    if not req.review:
        return run.report(REVIEW, SKIPPED, note="--no-review")
    clips = state.get(opts.TRANSCRIBE.name).get("signature", "")
    record = state.get(REVIEW)
    if record.get("signature") == clips and record.get("status") == PAUSED:  # the rerun after the stop
        state.record(REVIEW, clips, DONE)
        return run.report(REVIEW, DONE, note="reviewed: going on to training")
    if record.get("signature") == clips:
        return run.report(REVIEW, SKIPPED, note="reviewed before")
    state.record(REVIEW, clips, PAUSED)
    return run.report(REVIEW, PAUSED, note=f"review the dataset in {req.prepared}, then rerun to train")


def train(run: _Run) -> StepReport:
    from voicelab.dataset import PreparedDataset
    from voicelab.training.build import last_checkpoint
    from voicelab.voice import checkpoints_dir

    req, state, step = run.req, run.state, opts.TRAIN
    ds = PreparedDataset(req.prepared)
    data = [file_digest(ds.transcript_path), file_digest(ds.excluded_path)]
    sig = signature(data, run.argvs[step.name])
    record = state.get(step.name)
    extra: list[str] = []
    if req.voice.exists() and record.get("status") != DONE:  # published, then stopped before recording it
        state.record(step.name, sig, DONE)
        record = state.get(step.name)
    if req.voice.exists() and record.get("status") == DONE:
        if record.get("signature") == sig:
            return run.report(step.name, SKIPPED, note=f"the voice is trained: {req.voice}")
        if not req.retrain:
            return run.report(
                step.name, SKIPPED, note="the dataset or flags changed since the voice was trained: --retrain"
            )
        extra = ["--overwrite"]
    if last_checkpoint(checkpoints_dir(req.voices_dir, req.name)) is not None:
        resumable = record.get("status") == "started" and record.get("signature") == sig
        extra = [*extra, "--resume"] if resumable else ["--overwrite"]  # a retrain resumes with --overwrite
        logger.info(
            "%s: %s",
            step.name,
            "resuming from the last checkpoint"
            if resumable
            else "the data changed: training again from the start",
        )
    state.record(step.name, sig, "started")
    progress.emit(progress.EVENT_STEP, step=step.name, status="started")
    code = run.call(step, [req.name, str(req.prepared)], extra)
    if code == EXIT_OK:
        state.record(step.name, sig, DONE)
        state.forget(opts.EVALUATE.name)
        run.changed = True
    return _outcome(run, step.name, code)


def evaluate(run: _Run) -> StepReport:
    from voicelab.voice import VoiceFolder

    req, step = run.req, opts.EVALUATE
    sig = signature(file_digest(VoiceFolder(req.voice).metadata_path), run.argvs[step.name])
    if run.state.is_done(step.name, sig):
        return run.report(step.name, SKIPPED, note="evaluated")
    progress.emit(progress.EVENT_STEP, step=step.name, status="started")
    code = run.call(step, [req.name])
    if code == EXIT_OK:
        run.state.record(step.name, sig, DONE)
        run.changed = True
    return _outcome(run, step.name, code)


def reload(run: _Run) -> StepReport:
    """``POST /v1/voices/reload`` on ``--server`` (with the first of the server's API keys, if any)."""
    req = run.req
    if not req.server:
        return run.report(RELOAD, SKIPPED, note="no --server given")
    if not run.changed:
        return run.report(RELOAD, SKIPPED, note=f"{req.server} already has this voice")
    try:
        answer = reload_server(req.server)
    except (OSError, ValueError, UsageError) as e:
        # the voice is made; a server that is down or refuses is worth a line, not a failed run
        return run.report(RELOAD, FAILED, EXIT_OK, f"could not reload {req.server}: {e}")
    added = ", ".join(answer.get("added", [])) or "none"
    return run.report(RELOAD, DONE, note=f"{req.server} reloaded its voices (added: {added})")


def reload_server(server: str) -> dict[str, Any]:
    import httpx

    from voicelab.server.settings import SettingsError, load_settings

    headers = {}
    try:
        keys = load_settings().api_keys
    except SettingsError as e:
        raise UsageError(f"bad server settings: {e}") from e
    if keys:
        headers["Authorization"] = f"Bearer {keys[0].get_secret_value()}"
    try:
        response = httpx.post(
            f"{server.rstrip('/')}/v1/voices/reload", headers=headers, timeout=RELOAD_TIMEOUT_S
        )
    except httpx.HTTPError as e:
        raise OSError(str(e) or type(e).__name__) from e
    if response.status_code != 200:
        raise OSError(f"{response.status_code} {response.text[:200]}")
    return response.json()


STEP_RUNNERS: tuple[Callable[[_Run], StepReport], ...] = (fetch, prepare, transcribe, review, train, evaluate)


def make_voice(req: VoiceRequest) -> VoiceResult:
    """Run every step not done yet; stops at the first that fails, is interrupted, or pauses for review.

    Folders this run creates are removed again if it leaves nothing in them (a download that failed).
    """
    state = PipelineState.load(req.prepared, req.name)
    sources = preflight(req, state)
    fresh = [folder for folder in (req.raw, req.prepared) if not folder.exists()]
    try:
        with exclusive(req.prepared, req.name):
            run = _Run(req, state, sources)
            _run_steps(run)
    finally:
        for folder in fresh:
            _remove_if_unused(folder)
    return run.result


def _run_steps(run: _Run) -> None:
    progress.emit(progress.EVENT_PLAN, steps=list(STEP_ORDER), name=run.req.name)
    for runner in STEP_RUNNERS:
        report = runner(run)
        if report.status in (FAILED, INTERRUPTED, PAUSED):
            return
    reload(run)
    run.result.verdicts = _verdicts(run.req.voice)


def _remove_if_unused(folder: Path) -> None:
    """Remove ``folder`` when it holds nothing but the run's lock file."""
    from voicelab.dataset import PreparedDataset

    lock = PreparedDataset(folder).pipeline_lock_path
    with contextlib.suppress(OSError):
        if {p.name for p in folder.iterdir()} <= {lock.name}:
            lock.unlink(missing_ok=True)
            folder.rmdir()


def _verdicts(voice_dir: Path) -> dict[str, str] | None:
    from voicelab.voice import VoiceFolder

    summary = VoiceFolder(voice_dir).read_eval_summary()
    return summary["verdicts"] if summary else None
