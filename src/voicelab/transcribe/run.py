"""The transcribe step: clips -> transcript rows (durable one by one), signals, then the review.

``transcribe_clips`` runs the plan ``voicelab.transcribe.resume`` made, through a Whisper transcriber
(``voicelab.transcribe.backends``), measuring each clip's audio beside it on worker threads while Whisper
runs (``voicelab.transcribe.signals.Measurer``), and ends with the review (``voicelab.transcribe.review_inputs``). Every file is written through
``voicelab.dataset.PreparedDataset``.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from voicelab.audio import AudioError, read_audio
from voicelab.dataset import (
    ClipSignals,
    PreparedDataset,
    SignalsAppender,
    TagCensus,
    TranscriptWriter,
    clip_key,
    count_tags,
    normalize_tags,
    normalize_text,
)
from voicelab.progress import progress_bar
from voicelab.transcribe.backends import WHISPER_SAMPLE_RATE, ClipResult, Transcriber
from voicelab.transcribe.resume import ResumePlan, clip_duration_s
from voicelab.transcribe.review_inputs import ReviewOutcome, finish_review
from voicelab.transcribe.signals import QUALITY_BATCH, Measurer, PendingMeasures, QualityOptions

logger = logging.getLogger(__name__)

BAR_FORMAT = "{l_bar}{bar}| {n:.1f}/{total:.1f} min [{elapsed}<{remaining}]{postfix}"


@dataclass
class TranscribeSummary:
    output: Path
    review_path: Path
    clips: int = 0  # clips in the folder
    kept: int = 0  # clips done by an earlier run
    transcribed: int = 0  # rows written this run
    empty: int = 0  # clips Whisper found no text in this run (no row)
    failed: list[str] = field(default_factory=list)  # "path: reason" of unreadable clips
    audio_s: float = 0.0  # audio transcribed this run
    flagged: int = 0  # clips listed in the review
    rows: int = 0  # rows in the output now
    missing: list[str] = field(default_factory=list)  # rows kept whose clip is gone (ResumePlan.missing)
    changed: list[str] = field(default_factory=list)  # clips redone because their audio changed
    measured: int = 0  # clips given audio measures this run (speaker embedding, DNSMOS, speech time)
    quality_s: float = 0.0  # seconds the measuring threads spent on those measures
    quality_wait_s: float = 0.0  # seconds the run waited for them once Whisper was done (not hidden)
    other_speaker: int = 0  # clips flagged as another speaker
    noisy: int = 0  # clips flagged for background noise/music or distorted speech
    excluded_new: int = 0  # clips added to excluded.csv this run
    kept_restored: int = 0  # flagged clips left in, since a person restored them earlier
    excluded_path: Path | None = None
    report_path: Path | None = None
    kept_edits: list[str] = field(default_factory=list)
    """Clips Whisper transcribed whose row someone else (a person in the studio) wrote meanwhile: kept."""
    tags: TagCensus = field(default_factory=TagCensus)
    """The expressive tags of every row of the transcript now (clips and occurrences per tag)."""
    unknown_tags: dict[str, int] = field(default_factory=dict)
    """Annotations Whisper wrote this run that no Orpheus tag means (removed): spelling -> times."""

    @property
    def rowless(self) -> int:
        """Clips done by an earlier run that have no row now (the user deleted it, or no speech found)."""
        return self.kept - (self.rows - self.transcribed - len(self.missing))

    def add_review(self, outcome: ReviewOutcome) -> None:
        self.flagged, self.other_speaker, self.noisy = outcome.flagged, outcome.other_speaker, outcome.noisy
        self.excluded_new, self.excluded_path = outcome.excluded_new, outcome.excluded_path
        self.kept_restored = outcome.kept_restored
        self.report_path = outcome.report_path


def read_16k(path: Path) -> np.ndarray:
    """A clip as Whisper takes it: float32 mono at 16 kHz."""
    return read_audio(path, WHISPER_SAMPLE_RATE)[0]


def transcribe_clips(
    clips: Sequence[Path],
    output: PreparedDataset | Path,
    transcriber: Transcriber | None,
    plan: ResumePlan,
    *,
    progress: bool = True,
    read: Callable[[Path], np.ndarray] | None = None,
    quality: QualityOptions | None = None,
) -> TranscribeSummary:
    """Transcribe ``plan.todo`` into the dataset's transcript (``output``: the dataset, or its transcript
    file), durable row by row, then sort it and write the review.

    With ``quality``, each clip's audio measures are taken beside Whisper (and for clips an earlier run
    left unmeasured), the review weighs them, and the dataset report (and excluded.csv) are written.
    Every write follows the dataset's writer discipline (``PreparedDataset.writing``): the transcript
    first loses the rows this run redoes (all with --overwrite), then each new row is appended, durable,
    unless the clip got a row meanwhile (a person's edit in the studio stays); at the end (and on Ctrl-C or
    an error) it is sorted as it is then. Nothing is written from the rows held in memory, so nobody's
    edit is lost.
    """
    if plan.todo and transcriber is None:
        raise ValueError("clips to transcribe but no transcriber given")
    ds = PreparedDataset.of_transcript(output)
    summary = TranscribeSummary(output=ds.transcript_path, review_path=ds.review_path, clips=len(clips))
    summary.kept = len(clips) - len(plan.todo)
    summary.missing, summary.changed = list(plan.missing), list(plan.changed)
    redone = set(plan.changed)
    rows = ds.update_transcript(lambda now: [] if plan.fresh else [r for r in now if r[0] not in redone])
    work = _Pass(ds, transcriber, read or read_16k, summary, dict(rows), dict(plan.signals))
    ds.write_signals(work.signals)
    if quality is None:
        work.run(clips, plan.todo, progress)
    else:
        with Measurer(quality.device) as work.measurer:
            work.run(clips, plan.todo, progress)
        summary.quality_s = work.measurer.busy_s
    summary.rows = len(work.rows)
    summary.tags = count_tags(work.rows.values())
    summary.add_review(finish_review(ds, clips, work.rows, work.signals, work.read, quality))
    return summary


@dataclass
class _Batch:
    """Clips read, their audio measures under way, Whisper still to run."""

    clips: list[Path]
    ok: list[Path]
    audios: list[np.ndarray]
    pending: PendingMeasures | None


@dataclass
class _Pass:
    """One run over the clips: where rows and records go, and what has been done so far."""

    ds: PreparedDataset
    transcriber: Transcriber | None
    read: Callable[[Path], np.ndarray]
    summary: TranscribeSummary
    rows: dict[str, str]
    signals: dict[str, ClipSignals]
    measurer: Measurer | None = None

    def run(self, clips: Sequence[Path], todo: list[Path], progress: bool) -> None:
        """Transcribe ``todo`` (then catch up on unmeasured clips); the files are sorted at the end."""
        durations = {c: clip_duration_s(c) or 0.0 for c in todo}
        # disable=None: tqdm draws on a terminal only; in a log (no redraws) the bar logs a line every 5%
        bar = progress_bar(
            total=sum(durations.values()) / 60,
            unit="min",
            desc="transcribing (audio min)",
            bar_format=BAR_FORMAT,
            disable=None if progress and todo else True,
        )
        rows_out, signals_out = self.ds.transcript_writer(), self.ds.signals_appender()
        try:
            step = self.transcriber.batch_size if self.transcriber is not None else 1
            batches = [todo[start : start + step] for start in range(0, len(todo), step)]
            # the measures of the next batches start while Whisper works on this one (one per worker)
            ahead = self.measurer.workers if self.measurer is not None and batches else 0
            queue: deque[_Batch] = deque()
            done = 0
            for index, batch in enumerate(batches):
                queue.append(self.start(batch))
                while queue and (len(queue) > ahead or index == len(batches) - 1):
                    finished = self.transcribe(queue.popleft(), rows_out, signals_out)
                    done += len(finished)
                    bar.set_postfix_str(f"clips {done}/{len(todo)}", refresh=False)
                    bar.update(sum(durations[c] for c in finished) / 60)
            if self.measurer is not None:
                _catch_up_quality(
                    clips, self.rows, self.signals, signals_out, self.read, self.measurer, self.summary
                )
        finally:
            bar.close()
            self.sort_files()

    def start(self, batch: Sequence[Path]) -> _Batch:
        """Read a batch's clips and start their audio measures."""
        ok, audios = _read_clips(batch, self.read, self.summary.failed)
        pending = self.measurer.submit(audios) if self.measurer is not None and audios else None
        return _Batch(list(batch), ok, audios, pending)

    def transcribe(
        self, work: _Batch, rows_out: TranscriptWriter, signals_out: SignalsAppender
    ) -> list[Path]:
        """Whisper on a started batch, then its rows and records (each row before its record); returns the
        batch's clips."""
        ok, audios = work.ok, work.audios
        results = self.transcriber.transcribe_batch(audios) if audios else []  # type: ignore[union-attr]
        results = _tags_normalised(results, self.summary)
        measures = _measures(work.pending, len(audios), self.summary)
        for clip, audio, result, m in zip(ok, audios, results, measures, strict=True):
            key, duration = clip_key(clip), len(audio) / WHISPER_SAMPLE_RATE
            logger.debug("%s (%.1f s): %r", clip.name, duration, result.text)
            if _add_row(rows_out, clip, result.text, self.summary):  # the row first: it is what matters
                self.rows[key] = result.text
            record = ClipSignals(key, result.text, round(duration, 3), *_numbers(result), **m)
            signals_out.append(record)
            self.signals[key] = record
            self.summary.audio_s += duration
        return work.clips

    def sort_files(self) -> None:
        """Both files sorted as they are now (others' rows included), never rewritten from memory."""
        try:
            self.rows = dict(self.ds.sort_transcript())
            self.signals = self.ds.merge_signals(self.signals)
        except OSError as e:  # the appended file is already valid; sorting is a nicety
            logger.warning("%s left in transcription order, not sorted: %s", self.ds.transcript_path, e)


def _add_row(rows_out: TranscriptWriter, clip: Path, text: str, summary: TranscribeSummary) -> bool:
    """Whisper's row for ``clip``, unless it is empty or someone wrote the clip's row meanwhile."""
    if not text:
        logger.info("%s: no speech recognised; no row written", clip.name)
        summary.empty += 1
        return False
    if not rows_out.add(clip_key(clip), text):
        logger.info("%s: someone wrote its row meanwhile (the studio?); theirs is kept", clip.name)
        summary.kept_edits.append(clip_key(clip))
        return False
    summary.transcribed += 1
    return True


def _tags_normalised(results: Sequence[ClipResult], summary: TranscribeSummary) -> list[ClipResult]:
    """Whisper's annotations as Orpheus tags (``dataset.normalize_tags``); unknown ones counted, removed."""
    out = []
    for result in results:
        tagged = normalize_tags(result.text)
        for spelled in tagged.unknown:
            summary.unknown_tags[spelled] = summary.unknown_tags.get(spelled, 0) + 1
        out.append(replace(result, text=normalize_text(tagged.text)))
    return out


def _measures(pending: PendingMeasures | None, n: int, summary: TranscribeSummary) -> list[dict]:
    """A batch's audio measures (``{}`` each without them), the wait for them timed into ``summary``."""
    if pending is None:
        return [{} for _ in range(n)]
    began = time.perf_counter()
    measures = pending.result()
    summary.quality_wait_s += time.perf_counter() - began
    summary.measured += n
    return measures


def _catch_up_quality(
    clips: Sequence[Path],
    rows: dict[str, str],
    signals: dict[str, ClipSignals],
    appender: SignalsAppender,
    read: Callable[[Path], np.ndarray],
    measurer: Measurer,
    summary: TranscribeSummary,
) -> None:
    """Measure the clips done earlier without audio measures (an older run), never Whisper again."""
    stale = [
        c
        for c in clips
        if (clip_key(c) in signals and not signals[clip_key(c)].has_quality)
        or (clip_key(c) in rows and clip_key(c) not in signals)
    ]
    if stale:
        logger.info("measuring %d clip(s) transcribed by an earlier run without audio measures", len(stale))
    for start in range(0, len(stale), QUALITY_BATCH):
        ok, audios = _read_clips(stale[start : start + QUALITY_BATCH], read, summary.failed)
        if not audios:
            continue
        measures = _measures(measurer.submit(audios), len(audios), summary)
        for clip, audio, m in zip(ok, audios, measures, strict=True):
            key = clip_key(clip)
            old = signals.get(key)
            duration = round(len(audio) / WHISPER_SAMPLE_RATE, 3)
            rec = replace(old, **m) if old else ClipSignals(key, rows.get(key, ""), duration, **m)
            appender.append(rec)
            signals[key] = rec


def _read_clips(
    batch: Sequence[Path], read: Callable[[Path], np.ndarray], failed: list[str]
) -> tuple[list[Path], list[np.ndarray]]:
    """The clips of ``batch`` that read, and their audio; each unreadable one is logged and added to ``failed``."""
    ok, audios = [], []
    for clip in batch:
        try:
            audios.append(read(clip))
            ok.append(clip)
        except AudioError as e:
            logger.error("skipped: %s", e)
            failed.append(str(e))  # AudioError messages start with the path
    return ok, audios


def _numbers(result: ClipResult) -> tuple[float | None, float | None, float | None]:
    return result.avg_logprob, result.no_speech_prob, result.compression_ratio
