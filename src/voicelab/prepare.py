"""Raw recordings -> clean training clips (3-13 s, 16-bit mono WAV) and ``manifest.csv``.

The prepared folder's files are written through ``voicelab.dataset.PreparedDataset``; the end-of-run
summary is ``voicelab.prepare_summary``'s, the guide's dataset-size table ``voicelab.dataset_tiers``'.

Each source is read twice, never whole in memory:

1. decode block by block, downmix, resample (soxr, streaming) to the target rate, append the samples
   to an unlinked scratch file and build the 10 ms RMS envelope (``voicelab.segment``);
2. plan every cut on the envelope, then read back only the chosen spans, fade their edges, normalise
   them to the target RMS (with a peak guard) and write them atomically.

The manifest is rewritten atomically after each source, once its clips are on disk, so a crash never
leaves a manifest row without its clip. Sources already in the manifest are skipped on a rerun.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from voicelab import orpheus, segment
from voicelab.audio import AUDIO_SUFFIXES, AudioDecodeError, AudioError, AudioInfo, is_audio_file
from voicelab.dataset import ENCODING, ClipRecord, ManifestError, PreparedDataset, SourceLeftOut, indexed_key
from voicelab.errors import UsageError
from voicelab.fileio import printable_name

logger = logging.getLogger(__name__)

PEAK_CEILING_DBFS = -1.0
"""Highest peak a clip may reach after normalisation: 1 dB under full scale leaves room for int16
rounding and for inter-sample peaks when the clip is resampled later (SNAC, playback)."""
SECONDS_DECIMALS = 3  # manifest times to the millisecond
DB_DECIMALS = 2
SCRATCH_DTYPE = np.float32


class PrepareError(UsageError):
    """Nothing can be prepared as asked (INPUT missing or without audio, OUTPUT inside INPUT); the message
    says why and what to do."""


@dataclass(frozen=True)
class PrepareSettings:
    """The guide's flags, with its defaults."""

    sample_rate: int = orpheus.SAMPLE_RATE  # the rate Orpheus' SNAC codec works at
    min_duration: float = 3.0
    max_duration: float = 13.0
    silence_threshold: float = -40.0
    """dBFS; 10 ms frames under it are silent."""
    silence_min_len_ms: int = 500
    target_loudness: float = -20.0
    """RMS dBFS of every written clip (unless the peak guard lowers it)."""

    def split_params(self) -> segment.SplitParams:
        hop = segment.frame_hop(self.sample_rate)
        return segment.SplitParams.from_seconds(
            threshold_db=self.silence_threshold,
            min_s=self.min_duration,
            max_s=self.max_duration,
            pause_s=self.silence_min_len_ms / 1000,
            frame_s=hop / self.sample_rate,
        )


@dataclass
class SourceResult:
    """What happened to one source file."""

    source: str
    duration_s: float = 0.0
    records: list[ClipRecord] = field(default_factory=list)
    silence_s: float = 0.0
    short_speech_s: float = 0.0
    error: str | None = None
    cut_method: str = segment.METHOD_FIXED
    threshold_db: float | None = None

    @property
    def clip_s(self) -> float:
        return sum(r.duration_s for r in self.records)


@dataclass
class PrepareReport:
    output: Path
    settings: PrepareSettings
    results: list[SourceResult] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    """Sources already in the manifest, left as they were."""
    remembered: list[SourceLeftOut] = field(default_factory=list)
    """Sources an earlier run left out (failed, or no clip), unchanged since: not tried again."""
    dataset: list[ClipRecord] = field(default_factory=list)
    """Every row of the manifest after this run: earlier runs included."""

    @property
    def failed(self) -> list[SourceResult]:
        return [r for r in self.results if r.error is not None]

    @property
    def done(self) -> list[SourceResult]:
        return [r for r in self.results if r.error is None]

    @property
    def new_records(self) -> list[ClipRecord]:
        return [rec for r in self.done for rec in r.records]


# --------------------------------------------------------------------------------------------- inputs


def check_paths(input_path: Path, output_dir: Path) -> None:
    """Refuse an OUTPUT equal to or inside INPUT: a rerun would take the clips for new recordings."""
    src, dst = input_path.resolve(), output_dir.resolve()
    if dst == src or src in dst.parents:
        raise PrepareError(
            f"OUTPUT {output_dir} is inside INPUT {input_path}: the clips would be read back as recordings; "
            "choose an output folder outside the input (e.g. prepared/NAME/)"
        )


def find_sources(input_path: Path) -> list[tuple[Path, str]]:
    """Audio files under ``input_path`` (recursive, sorted) or the file itself, each with its manifest key:
    the path relative to the input folder, in POSIX form (the file name for a single file)."""
    if not input_path.exists():
        raise PrepareError(f"INPUT {input_path} does not exist")
    suffixes = " ".join(sorted(AUDIO_SUFFIXES))
    if input_path.is_file():
        if input_path.suffix.lower() not in AUDIO_SUFFIXES:
            raise PrepareError(f"INPUT {input_path} is not an audio file (supported: {suffixes})")
        return [(input_path, input_path.name)]
    found = [
        (p, p.relative_to(input_path).as_posix())
        for p in input_path.rglob("*")
        if is_audio_file(p) and not any(part.startswith(".") for part in p.relative_to(input_path).parts)
    ]
    if not found:
        raise PrepareError(f"INPUT {input_path} holds no audio files (looked for: {suffixes})")
    return sorted(found, key=lambda item: item[1])


def clip_stem(source_key: str, taken: set[str]) -> str:
    """A clip-name stem for a source: its file stem, made unique against ``taken`` (other sources' stems).

    ``a/talk.wav`` and ``b/talk.wav`` would both give ``talk_000.wav``; the second becomes ``b_talk``
    (its folders joined with ``_``), then ``b_talk_wav``, then a number.
    """
    path = Path(source_key)
    candidates = [
        path.stem,
        "_".join([*path.parent.parts, path.stem]),
        "_".join([*path.parts]).replace(".", "_"),
    ]
    for stem in candidates:
        if stem and stem not in taken:
            return stem
    n = 2
    while f"{candidates[-1]}_{n}" in taken:
        n += 1
    return f"{candidates[-1]}_{n}"


def _stem_of(key: str) -> str:
    return key.rsplit("_", 1)[0]


# ------------------------------------------------------------------------------------------ clip maths


def apply_fades(audio: np.ndarray, fade_samples: int) -> np.ndarray:
    """Half-cosine fade-in and fade-out over ``fade_samples`` (float32 ``(T,)``); returns a new array."""
    out = np.array(audio, dtype=np.float32, copy=True)
    n = min(fade_samples, len(out) // 2)
    if n > 0:
        ramp = (0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)).astype(np.float32)
        out[:n] *= ramp
        out[-n:] *= ramp[::-1]
    return out


def normalise(
    audio: np.ndarray, target_dbfs: float, ceiling_dbfs: float = PEAK_CEILING_DBFS
) -> tuple[np.ndarray, float, bool]:
    """Scale float32 ``(T,)`` audio to ``target_dbfs`` RMS, unless its peak would pass ``ceiling_dbfs``.

    Returns ``(scaled, gain_db, peak_limited)``; when limited, the gain is lowered so that the peak sits
    exactly at the ceiling, and the RMS is below the target by the difference.
    """
    rms = segment.rms_dbfs(audio)
    peak = segment.peak_dbfs(audio)
    if peak <= segment.DB_FLOOR:
        return np.array(audio, dtype=np.float32, copy=True), 0.0, False
    gain_db = target_dbfs - rms
    limited = peak + gain_db > ceiling_dbfs
    if limited:
        gain_db = ceiling_dbfs - peak
    scaled = (np.asarray(audio, dtype=np.float64) * 10 ** (gain_db / 20)).astype(np.float32)
    return scaled, gain_db, limited


# ------------------------------------------------------------------------------------------- pipeline


def _decode_to_scratch(
    info: AudioInfo, sample_rate: int, scratch, on_progress: Callable[[float], None]
) -> tuple[np.ndarray, int]:
    """Pass 1: stream the source into ``scratch`` (mono float32 at ``sample_rate``) and its envelope."""
    from voicelab.audio import stream_mono

    envelope = segment.EnvelopeBuilder(segment.frame_hop(sample_rate))
    for mono, consumed in stream_mono(info, sample_rate):
        if len(mono):
            envelope.add(mono)
            scratch.write(np.ascontiguousarray(mono, dtype=SCRATCH_DTYPE).tobytes())
        if consumed:
            on_progress(consumed / info.sample_rate)
    if envelope.samples == 0:
        raise AudioDecodeError(f"{info.path}: decodes to no audio samples")
    return envelope.finish(), envelope.samples


def _read_span(scratch, start: int, stop: int) -> np.ndarray:
    itemsize = np.dtype(SCRATCH_DTYPE).itemsize
    scratch.seek(start * itemsize)
    return np.frombuffer(scratch.read((stop - start) * itemsize), dtype=SCRATCH_DTYPE)


def prepare_source(
    info: AudioInfo,
    source_key: str,
    stem: str,
    output: PreparedDataset | Path,
    settings: PrepareSettings,
    on_progress: Callable[[float], None] = lambda _seconds: None,
) -> SourceResult:
    """Cut one recording into clips in the ``output`` dataset; returns its manifest rows and what was left
    out. Raises ``AudioError`` (naming the file) when it cannot be decoded; nothing is written then.
    """
    ds = output if isinstance(output, PreparedDataset) else PreparedDataset(output)
    rate = settings.sample_rate
    hop = segment.frame_hop(rate)
    fade_samples = round(segment.FADE_SECONDS * rate)
    params = settings.split_params()
    with ds.scratch_file() as scratch:
        env_db, n_samples = _decode_to_scratch(info, rate, scratch, on_progress)
        threshold, method = segment.choose_threshold(env_db, params.threshold_db)
        plan = segment.plan_clips(env_db, replace(params, threshold_db=threshold))
        result = SourceResult(
            source=source_key,
            duration_s=n_samples / rate,
            short_speech_s=plan.dropped_speech_frames * hop / rate,
            cut_method=method,
            threshold_db=round(threshold, DB_DECIMALS),
        )
        for index, span in enumerate(plan.clips):
            start, stop = span.start * hop, span.end * hop
            audio, gain_db, limited = normalise(
                apply_fades(_read_span(scratch, start, stop), fade_samples), settings.target_loudness
            )
            key = indexed_key(stem, index)
            ds.write_clip(key, audio, rate)
            result.records.append(
                ClipRecord(
                    key=key,
                    source=source_key,
                    start_s=round(start / rate, SECONDS_DECIMALS),
                    end_s=round(stop / rate, SECONDS_DECIMALS),
                    duration_s=round((stop - start) / rate, SECONDS_DECIMALS),
                    rms_dbfs=round(segment.rms_dbfs(audio), DB_DECIMALS),
                    peak_dbfs=round(segment.peak_dbfs(audio), DB_DECIMALS),
                    gain_db=round(gain_db, DB_DECIMALS),
                    peak_limited=limited,
                    start_cut=span.start_cut,
                    end_cut=span.end_cut,
                    cut_method=method,
                    threshold_dbfs=result.threshold_db,
                )
            )
    result.silence_s = max(0.0, result.duration_s - result.clip_s - result.short_speech_s)
    return result


def _remove_orphans(ds: PreparedDataset, stem: str, keep: set[str]) -> None:
    """Delete the clips of ``stem`` (``{stem}_NNN``) that no manifest row lists (left by a crash or an
    older run)."""
    for key in ds.indexed_keys(stem):
        if key not in keep:
            logger.info("removing %s: no manifest row lists it", ds.clip_path(key))
            ds.remove_clip(key)


@dataclass
class _Run:
    """What every source of one run shares: where clips go, the manifest so far, the stems taken, and the
    recordings left out (remembered in ``sources_left_out.csv``)."""

    ds: PreparedDataset
    settings: PrepareSettings
    records: list[ClipRecord]
    left_out: dict[str, SourceLeftOut]
    stems: dict[str, str] = field(default_factory=dict)

    def leave_out(self, path: Path, key: str, reason: str) -> None:
        self.left_out[key] = SourceLeftOut.of(path, key, reason)
        self.ds.update_sources_left_out(key, self.left_out[key])

    def prepare(self, key: str, path: Path, info: AudioInfo | AudioError, bar) -> SourceResult:
        """One source: its clips written and its manifest rows saved, or the reason it gave none."""
        if isinstance(info, AudioError):
            logger.error("%s", info)
            self.leave_out(path, key, str(info))
            return SourceResult(source=key, error=str(info))
        stem = clip_stem(key, set(self.stems.values()))
        _remove_orphans(self.ds, stem, {r.key for r in self.records})
        tracker = _SourceProgress(bar, (info.duration_s or 0.0) / 60)
        try:
            result = prepare_source(info, key, stem, self.ds, self.settings, tracker.advance)
        except AudioError as e:
            logger.error("%s", e)
            self.leave_out(path, key, str(e))
            return SourceResult(source=key, error=str(e))
        finally:
            tracker.finish()
        if not result.records:
            why = "silence only" if result.short_speech_s == 0 else "speech too short for a clip"
            logger.warning("%s: no clips (%s)", info.path, why)
            self.leave_out(path, key, f"no clips: {why}")
            return result
        self.stems[key] = stem
        # merged into the manifest as it is now (the folder's writer discipline), not written from memory
        self.records = self.ds.update_manifest(key, result.records)
        if self.left_out.pop(key, None) is not None:
            self.ds.update_sources_left_out(key, None)
        logger.info(
            "%s: %.1f s -> %d clip(s), %.1f s kept",
            key,
            result.duration_s,
            len(result.records),
            result.clip_s,
        )
        return result


def prepare_dataset(
    input_path: Path,
    output_dir: Path,
    settings: PrepareSettings | None = None,
    *,
    overwrite: bool = False,
    retry_left_out: bool = False,
    progress: bool = True,
) -> PrepareReport:
    """Prepare every audio file under ``input_path`` into ``output_dir`` (see the module docstring).

    A source that fails is logged (one line naming it and the reason) and recorded in the report and in
    ``sources_left_out.csv``; the others go on. A rerun skips sources already in the manifest, and those
    left out before and unchanged since (unless ``retry_left_out``). Raises ``PrepareError`` or
    ``dataset.ManifestError`` when nothing can start.
    """
    settings = settings or PrepareSettings()
    check_paths(input_path, output_dir)
    sources = find_sources(input_path)
    output_dir.mkdir(parents=True, exist_ok=True)
    ds = PreparedDataset(output_dir)
    if overwrite:
        _clear_previous(ds)
    run = _Run(ds, settings, ds.read_manifest(), ds.read_sources_left_out())
    run.stems = {r.source: _stem_of(r.key) for r in run.records}
    report = PrepareReport(output=output_dir, settings=settings)
    todo = _plan(sources, run, report, retry_left_out)
    total_min = sum((i.duration_s or 0.0) / 60 for _, _, i in todo if isinstance(i, AudioInfo))
    bar_format = "{l_bar}{bar}| {n:.1f}/{total:.1f} audio min [{elapsed}<{remaining}] {postfix}"
    with _progress_bar(total_min, bar_format, progress and bool(todo)) as bar:
        for key, path, info in todo:
            bar.set_postfix_str(printable_name(key), refresh=False)
            report.results.append(run.prepare(key, path, info, bar))
    report.dataset = run.records
    return report


def _unnamable(key: str) -> SourceResult | None:
    """A source whose name the manifest (UTF-8) cannot hold: a failure naming it, before any work; else None.

    It is not remembered in ``sources_left_out.csv`` (UTF-8 too), so each run names it again until renamed.
    """
    try:
        key.encode(ENCODING)
    except UnicodeEncodeError:
        shown = printable_name(key)
        error = f"{shown}: the file name is not valid UTF-8; rename it and run again"
        logger.error("%s", error)
        return SourceResult(source=shown, error=error)
    return None


def _plan(
    sources: list[tuple[Path, str]], run: _Run, report: PrepareReport, retry_left_out: bool
) -> list[tuple[str, Path, AudioInfo | AudioError]]:
    """The sources this run works on, each probed; the others go to ``report.skipped``/``remembered``."""
    done = {r.source for r in run.records}
    todo = []
    for path, key in sources:
        note = run.left_out.get(key)
        if (unnamable := _unnamable(key)) is not None:
            report.results.append(unnamable)
        elif key in done:
            report.skipped.append(key)
        elif note is not None and not retry_left_out and note.matches(path):
            report.remembered.append(note)
        else:
            todo.append((key, path, _probe(path)))
    if report.skipped:
        logger.info(
            "%d source(s) already in the manifest: skipped (--overwrite redoes them)", len(report.skipped)
        )
    return todo


def _progress_bar(total: float, bar_format: str, wanted: bool):
    """tqdm's bar on a terminal; elsewhere (logs, pipes) a silent stand-in, so tqdm is not even imported."""
    if not (wanted and sys.stderr.isatty()):
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, bar_format=bar_format)


class _NoBar:
    total = None
    n = 0.0

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def update(self, step: float) -> None:
        self.n += step

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        pass


class _SourceProgress:
    """Moves the bar by one source's audio minutes, however far its header's duration is off."""

    def __init__(self, bar, minutes: float) -> None:
        self.bar, self.minutes, self.done = bar, minutes, 0.0

    def advance(self, seconds: float) -> None:
        step = min(seconds / 60, self.minutes - self.done)
        if self.bar.total is not None:  # float sums may pass the total by an ulp: tqdm warns, shows -00:00
            step = min(step, self.bar.total - self.bar.n)
        if step > 0:
            self.done += step
            self.bar.update(step)

    def finish(self) -> None:
        self.advance((self.minutes - self.done) * 60)


def _probe(path: Path) -> AudioInfo | AudioError:
    from voicelab.audio import open_audio

    try:
        return open_audio(path)
    except AudioError as e:
        return e


def _clear_previous(ds: PreparedDataset) -> None:
    """--overwrite: delete the clips the old manifest lists, the manifest, and what was left out."""
    with ds.writing():
        ds.write_sources_left_out({})
        try:
            old = ds.read_manifest()
        except ManifestError as e:
            logger.warning("%s; it is replaced", e)
            old = []
        for record in old:
            ds.remove_clip(record.key)
        ds.remove_manifest()
