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

import contextlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from voicelab import segment, speaker_turns
from voicelab.audio import AUDIO_SUFFIXES, AudioDecodeError, AudioError, AudioInfo, is_audio_file
from voicelab.dataset import ENCODING, ClipRecord, ManifestError, PreparedDataset, SourceLeftOut, indexed_key
from voicelab.errors import UsageError
from voicelab.fileio import printable_name
from voicelab.prepare_settings import MUSIC_BED_DROP, MUSIC_BED_KEEP, PrepareSettings
from voicelab.progress import progress_bar

logger = logging.getLogger(__name__)

PEAK_CEILING_DBFS = -1.0
"""Highest peak a clip may reach after normalisation: 1 dB under full scale leaves room for int16
rounding and for inter-sample peaks when the clip is resampled later (SNAC, playback)."""
SECONDS_DECIMALS = 3  # manifest times to the millisecond
DB_DECIMALS = 2
SCRATCH_DTYPE = np.float32
SIMILARITY_DECIMALS = 3


class PrepareError(UsageError):
    """Nothing can be prepared as asked (INPUT missing or without audio, OUTPUT inside INPUT); the message
    says why and what to do."""


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
    selected: bool = False
    """One voice was kept (--reference or --speaker auto): the seconds below are measured."""
    other_voice_s: float = 0.0
    music_s: float = 0.0
    """Music dropped: music alone, and (unless kept) the character over a music bed."""
    unjudged_s: float = 0.0
    """Sound too short, or too near a change of voice, to tell whose it is."""
    character_s: float = 0.0
    """The character's speech found (kept or not)."""

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
    reference: speaker_turns.VoiceReference | None = None
    voices_found: list[speaker_turns.FoundVoice] = field(default_factory=list)
    """--speaker auto: the voices found across the folder, the kept one first."""
    voice_from_earlier_run: float | None = None
    """--speaker auto on a rerun: the voice print an earlier run picked (its minutes then)."""

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
    selection: speaker_turns.Selection | None = None,
    measured: speaker_turns.SourceVoices | None = None,
    separator=None,
) -> SourceResult:
    """Cut one recording into clips in the ``output`` dataset; returns its manifest rows and what was left
    out.

    With ``selection`` only the character's stretches become clips (``measured``: its windows when an
    earlier pass measured them). With ``separator`` (a demucs model, ``--separate-vocals``) everything
    is done on the recording's vocals stem (``voicelab.separation``). Raises ``AudioError`` (naming the
    file) when it cannot be decoded; nothing is written then.
    """
    ds = output if isinstance(output, PreparedDataset) else PreparedDataset(output)
    rate = settings.sample_rate
    hop = segment.frame_hop(rate)
    params = settings.split_params()
    with contextlib.ExitStack() as stack:
        scratch, env_db, n_samples = _decode(info, ds, settings, on_progress, separator, stack)
        threshold, method = segment.choose_threshold(env_db, params.threshold_db)
        params = replace(params, threshold_db=threshold)
        voices = None
        if selection is None:
            plan = segment.plan_clips(env_db, params)
        else:
            if separator is not None:
                measured = None  # the first pass measured the mix: the vocals are measured again
            voices = measured or _measure(env_db, threshold, scratch, hop, rate, selection.device)
            plan = speaker_turns.select_clips(env_db, threshold, params, selection, voices)
        result = SourceResult(
            source=source_key,
            duration_s=n_samples / rate,
            short_speech_s=plan.dropped_speech_frames * hop / rate,
            cut_method=method,
            threshold_db=round(threshold, DB_DECIMALS),
        )
        if voices is not None:
            _count_voices(result, voices, selection)
        for span in plan.clips:
            _write_clip(scratch, span, stem, ds, settings, result, selection, voices)
    dropped = result.short_speech_s + result.other_voice_s + result.music_s + result.unjudged_s
    result.silence_s = max(0.0, result.duration_s - result.clip_s - dropped)
    return result


def load_separator(settings: PrepareSettings):
    """--separate-vocals: the demucs model (``models.separation.load_demucs``; ``SeparationModelError``)."""
    from voicelab.models.separation import load_demucs

    return load_demucs(settings.demucs_model, settings.demucs_repo, settings.device)


def _decode(info: AudioInfo, ds: PreparedDataset, settings: PrepareSettings, on_progress, separator, stack):
    """Pass 1: the recording decoded into a scratch file, its sample count and envelope; with ``separator``,
    its vocals stem in a second scratch file and the stem's envelope instead."""
    rate = settings.sample_rate
    scratch = stack.enter_context(ds.scratch_file())
    env_db, n_samples = _decode_to_scratch(info, rate, scratch, on_progress)
    if separator is None:
        return scratch, env_db, n_samples
    from voicelab import separation

    logger.info("%s: separating the vocals (%.1f min)", info.path, n_samples / rate / 60)
    vocals = stack.enter_context(ds.scratch_file())
    envelope = segment.EnvelopeBuilder(segment.frame_hop(rate))

    def write(stem: np.ndarray) -> None:
        envelope.add(stem)
        vocals.write(stem.tobytes())

    recording = separation.Recording(lambda a, b: _read_span(scratch, a, b).copy(), n_samples, rate)
    separation.separate_vocals(separator, recording, write, device=settings.device)
    return vocals, envelope.finish(), n_samples


def _measure(env_db, threshold, scratch, hop: int, rate: int, device: str) -> speaker_turns.SourceVoices:
    return speaker_turns.measure_windows(
        env_db, threshold, lambda a, b: _read_span(scratch, a, b), hop, rate, device=device
    )


def measure_source(
    info: AudioInfo, ds: PreparedDataset, settings: PrepareSettings
) -> speaker_turns.SourceVoices:
    """--speaker auto's first pass over one recording: its windows' voice prints (nothing written)."""
    rate = settings.sample_rate
    hop = segment.frame_hop(rate)
    with ds.scratch_file() as scratch:
        env_db, _ = _decode_to_scratch(info, rate, scratch, lambda _s: None)
        threshold, _ = segment.choose_threshold(env_db, settings.silence_threshold)
        return _measure(env_db, threshold, scratch, hop, rate, settings.device)


def _count_voices(
    result: SourceResult, voices: speaker_turns.SourceVoices, selection: speaker_turns.Selection
) -> None:
    result.selected = True
    result.other_voice_s = voices.seconds(speaker_turns.OTHER)
    result.music_s = voices.seconds(speaker_turns.MUSIC)
    result.unjudged_s = voices.seconds(speaker_turns.SHORT)
    result.character_s = voices.seconds(speaker_turns.KEEP, speaker_turns.MUSIC_BED)
    if speaker_turns.MUSIC_BED not in selection.keep_labels:
        result.music_s += voices.seconds(speaker_turns.MUSIC_BED)


def _write_clip(scratch, span, stem, ds: PreparedDataset, settings, result, selection, voices) -> None:
    """Read, fade, normalise and write one planned clip and add its manifest row."""
    rate = settings.sample_rate
    hop = segment.frame_hop(rate)
    start, stop = span.start * hop, span.end * hop
    raw = _read_span(scratch, start, stop)
    similarity, music_mark = None, ""
    if voices is not None:
        sim = speaker_turns.clip_similarity(voices, span.start, span.end, selection.reference)
        similarity = None if math.isnan(sim) else round(sim, SIMILARITY_DECIMALS)
        bed = any(
            w.label == speaker_turns.MUSIC_BED and w.start < span.end and w.end > span.start
            for w in voices.windows
        )
        music_mark = "bed" if bed else "no"
    audio, gain_db, limited = normalise(
        apply_fades(raw, round(segment.FADE_SECONDS * rate)), settings.target_loudness
    )
    key = indexed_key(stem, len(result.records))
    ds.write_clip(key, audio, rate)
    result.records.append(
        ClipRecord(
            key=key,
            source=result.source,
            start_s=round(start / rate, SECONDS_DECIMALS),
            end_s=round(stop / rate, SECONDS_DECIMALS),
            duration_s=round((stop - start) / rate, SECONDS_DECIMALS),
            rms_dbfs=round(segment.rms_dbfs(audio), DB_DECIMALS),
            peak_dbfs=round(segment.peak_dbfs(audio), DB_DECIMALS),
            gain_db=round(gain_db, DB_DECIMALS),
            peak_limited=limited,
            start_cut=span.start_cut,
            end_cut=span.end_cut,
            cut_method=result.cut_method,
            threshold_dbfs=result.threshold_db,
            speaker_similarity=similarity,
            music=music_mark,
        )
    )


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
    selection: speaker_turns.Selection | None = None
    measured: dict[str, speaker_turns.SourceVoices] = field(default_factory=dict)
    """--speaker auto: each source's windows from the first pass."""
    separator: object = None
    """--separate-vocals: the demucs model, loaded once."""

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
            result = prepare_source(
                info,
                key,
                stem,
                self.ds,
                self.settings,
                tracker.advance,
                self.selection,
                self.measured.pop(key, None),
                self.separator,
            )
        except AudioError as e:
            logger.error("%s", e)
            self.leave_out(path, key, str(e))
            return SourceResult(source=key, error=str(e))
        finally:
            tracker.finish()
        if result.selected:
            _record_source_voices(self.ds, result)
        if not result.records:
            why = _why_no_clips(result, self.settings)
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


def _why_no_clips(result: SourceResult, settings: PrepareSettings) -> str:
    if result.selected and result.character_s == 0:
        return (
            "the character never speaks in it (no stretch reaches similarity "
            f"{settings.speaker_threshold:g} to their voice)"
        )
    if result.selected and result.music_s > 0 and settings.music_bed == MUSIC_BED_DROP:
        return "the character speaks only over music, dropped by --music-bed drop (keep keeps it, marked)"
    if result.music_s > 0 and result.short_speech_s == 0:
        return "music only"
    return "silence only" if result.short_speech_s == 0 else "speech too short for a clip"


def _record_source_voices(ds: PreparedDataset, result: SourceResult) -> None:
    from voicelab.dataset import SourceMinutes

    ds.update_source_voices(
        SourceMinutes(
            result.source,
            result.duration_s / 60,
            result.clip_s / 60,
            result.other_voice_s / 60,
            result.music_s / 60,
            result.unjudged_s / 60,
        )
    )


def _selection(
    settings: PrepareSettings, run: _Run, todo: list, report: PrepareReport
) -> speaker_turns.Selection | None:
    """The voice to keep: the references' voice print, or (--speaker auto) the voice that speaks most in
    the sources of this run, measured in a first pass. ``None`` without either flag."""
    if settings.reference:
        report.reference = report.reference or speaker_turns.load_reference(
            settings.reference, device=settings.device
        )
        reference = report.reference.embedding
        run.ds.write_voice_print(reference, report.reference.seconds / 60)  # transcribe's review reads it
    elif settings.speaker_auto and (earlier := run.ds.read_voice_print()) is not None:
        reference = np.asarray(earlier[0], dtype=np.float32)
        report.voice_from_earlier_run = earlier[1]
        logger.info("--speaker auto: keeping the voice an earlier run picked (%s)", run.ds.voice_print_path)
    elif settings.speaker_auto:
        for key, _path, info in todo:
            if isinstance(info, AudioInfo):
                with contextlib.suppress(AudioError):  # the second pass reports it
                    run.measured[key] = measure_source(info, run.ds, settings)
        report.voices_found = speaker_turns.find_voices(list(run.measured.values()))
        if not report.voices_found:
            return None
        reference = report.voices_found[0].embedding
        run.ds.write_voice_print(reference, report.voices_found[0].seconds / 60)
        logger.info(
            "--speaker auto: keeping the voice that speaks most (%.1f min); %d other voice(s) found",
            report.voices_found[0].seconds / 60,
            len(report.voices_found) - 1,
        )
    else:
        return None
    return speaker_turns.Selection(
        reference,
        settings.speaker_threshold,
        keep_music_bed=settings.music_bed == MUSIC_BED_KEEP,
        device=settings.device,
    )


def prepare_dataset(
    input_path: Path,
    output_dir: Path,
    settings: PrepareSettings | None = None,
    *,
    overwrite: bool = False,
    retry_left_out: bool = False,
    progress: bool = True,
    reference: speaker_turns.VoiceReference | None = None,
    separator=None,
) -> PrepareReport:
    """Prepare every audio file under ``input_path`` into ``output_dir`` (see the module docstring).

    A source that fails is logged (one line naming it and the reason) and recorded in the report and in
    ``sources_left_out.csv``; the others go on. A rerun skips sources already in the manifest, and those
    left out before and unchanged since (unless ``retry_left_out``). Raises ``PrepareError``,
    ``speaker_turns.ReferenceError``, ``models.separation.SeparationModelError`` or
    ``dataset.ManifestError`` when nothing can start. ``reference``: ``settings.reference`` already loaded
    (``speaker_turns.load_reference``); ``separator``: the demucs model of ``settings.separate_vocals``
    already loaded (``load_separator``).
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
    report = PrepareReport(output=output_dir, settings=settings, reference=reference)
    todo = _plan(sources, run, report, retry_left_out)
    if settings.separate_vocals and todo:
        run.separator = separator or load_separator(settings)
    run.selection = _selection(settings, run, todo, report)
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
    """tqdm's bar on a terminal (elsewhere tqdm is not even imported), and progress events when asked."""
    return progress_bar(total=total, unit="min", bar_format=bar_format, disable=None if wanted else True)


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
    """--overwrite: delete the clips the old manifest lists, the manifest, what was left out, the minutes
    per voice and the voice kept."""
    with ds.writing():
        ds.write_sources_left_out({})
        ds.write_source_voices({})
        ds.remove_voice_print()
        try:
            old = ds.read_manifest()
        except ManifestError as e:
            logger.warning("%s; it is replaced", e)
            old = []
        for record in old:
            ds.remove_clip(record.key)
        ds.remove_manifest()
