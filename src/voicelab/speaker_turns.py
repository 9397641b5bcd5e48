"""Whose voice is where in a recording: keep the character's stretches, cut at every change of voice.

prepare-audio runs this on each recording when it is given ``--reference`` (clean recordings of the
character) or ``--speaker auto``. Everything is decided on the 10 ms frames of the envelope
(``voicelab.segment``), and audio is read back only for the stretches that sound:

1. **Units**: runs of frames over the recording's silence threshold, joined across gaps shorter than
   ``UNIT_GAP_S``. A change of voice in a conversation leaves at least such a gap between turns, so
   each unit holds one voice or starts a new one; a unit under ``MIN_JUDGE_S`` is too short for the
   speaker encoder to tell whose it is ("Really?"), and is dropped, never guessed.
2. **Windows**: each unit is split into near-equal windows of at most ``WINDOW_S``; each window is one
   pass of the GE2E speaker encoder (``voicelab.quality.embed_mel_windows``) and gets a held-tone share
   (``voicelab.music``). Every frame of sound goes through the encoder once.
3. **Judging**: a window is the character's when its voice print's cosine similarity to the reference
   reaches the threshold. A window of the character that touches another voice's window inside one unit
   (a change of voice with no gap) is dropped too: the change lies somewhere inside it.
4. **Regions**: runs of the character's windows with nothing else between them. prepare-audio plans clips
   inside each region separately (``segment.plan_clips``), so no clip crosses a change of voice, and
   every region edge lies in the gap between two voices.

Speaker encoder behaviour measured on espeak-ng voices (docs/benchmarks.md): 1.6 s windows of the
character score 0.78-0.93 against a two-sentence reference, other voices 0.54-0.76; at 1.0 s 0.72-0.92
against 0.57-0.74; below 0.6 s the two overlap widely.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from voicelab import music, quality, segment
from voicelab.errors import UsageError
from voicelab.prepare_settings import DEFAULT_THRESHOLD_DB, SPEAKER_THRESHOLD

logger = logging.getLogger(__name__)

UNIT_GAP_S = 0.10
"""Gaps shorter than this stay inside a unit (between words); a turn change leaves a longer one (the
conversations measured here: 0.15-0.6 s)."""
MIN_JUDGE_S = 0.5
"""Units shorter than this are not judged. A unit is a natural phrase (gaps on both sides), which the
encoder judges better than a window cut from running speech: units of 0.45-1.0 s scored 0.80-0.89 for
the character and 0.54-0.71 for other voices; under 0.45 s only a word or two is left."""
WINDOW_S = 1.6
"""Longest window the encoder judges at once: GE2E's own partial length, where the two voices separate."""
MAX_UNIT_S = 30.0
"""Audio read back at once: a unit longer than this (speech over continuous music) is read in pieces,
so memory stays flat however long the recording."""
MEASURE_THREADS = 1
"""BLAS and OpenMP threads while measuring (numpy's matrix products, torch's LSTM): on the shared 2-core
machine a second thread spun for a core it did not get, and the mel products alone took 11 s of CPU for
10 minutes of audio instead of under 1 s (docs/benchmarks.md)."""
BATCH_AUDIO_S = 600.0
"""Seconds of windows embedded per encoder call: bounds memory (mels of 10 minutes: ~10 MB, the LSTM's
gate inputs of one group of windows ~40 MB) while its groups of windows stay full (120 s left a third of
the groups part-empty and cost 15% more CPU)."""

KEEP = "keep"
OTHER = "other"
MUSIC = "music"
MUSIC_BED = "bed"
SHORT = "short"
"""Labels of a stretch: the character's (kept), another voice, music alone, the character over a music bed,
too short (or too near a change) to tell."""


@dataclass
class Window:
    """A stretch of sound judged as one: frames ``[start, end)`` of the envelope."""

    start: int
    end: int
    unit: int
    """Index of the unit it belongs to; windows of one unit touch each other."""
    embedding: np.ndarray | None = None
    music_share: float = 0.0
    similarity: float | None = None
    label: str = SHORT

    @property
    def length(self) -> int:
        return self.end - self.start


@dataclass
class SourceVoices:
    """The judged stretches of one recording, and what its clips may use."""

    windows: list[Window] = field(default_factory=list)
    frames_per_second: float = 100.0

    def seconds(self, *labels: str) -> float:
        return sum(w.length for w in self.windows if w.label in labels) / self.frames_per_second

    def regions(self, total_frames: int, keep: Sequence[str] = (KEEP,)) -> list[Region]:
        """Runs of kept windows with nothing else between them, each extended to the middle of the gap on
        either side (to the recording's edge where nothing was dropped before or after it)."""
        out: list[Region] = []
        run: list[Window] = []
        dropped_end: int | None = None  # end of the last dropped window before the run
        for w in [*self.windows, None]:
            if w is not None and w.label in keep:
                if not run:
                    before = dropped_end
                run.append(w)
                continue
            if run:
                start = 0 if before is None else (before + run[0].start) // 2
                end = total_frames if w is None else (run[-1].end + w.start) // 2
                out.append(Region(start, end, before is not None, w is not None))
                run = []
            if w is not None:
                dropped_end = w.end
        return out


@dataclass(frozen=True)
class Region:
    """Frames ``[start, end)`` where clips may be cut; ``cut_before``/``cut_after``: a dropped stretch
    (another voice, music, too short to tell) lies on that side, not the recording's edge."""

    start: int
    end: int
    cut_before: bool
    cut_after: bool


def sound_units(env_db: np.ndarray, threshold_db: float, frame_s: float) -> list[tuple[int, int]]:
    """Runs of frames at or over ``threshold_db``, joined across gaps under ``UNIT_GAP_S``."""
    loud = np.asarray(env_db) >= threshold_db
    edges = np.diff(np.concatenate([[0], loud.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    gap = round(UNIT_GAP_S / frame_s)
    units: list[tuple[int, int]] = []
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        if units and s - units[-1][1] < gap:
            units[-1] = (units[-1][0], e)
        else:
            units.append((s, e))
    return units


def unit_windows(start: int, end: int, frame_s: float) -> list[tuple[int, int]]:
    """Near-equal windows of at most ``WINDOW_S`` covering ``[start, end)``; none under ``MIN_JUDGE_S``."""
    length = end - start
    if length * frame_s < MIN_JUDGE_S - 1e-9:
        return []
    n = math.ceil(length * frame_s / WINDOW_S - 1e-9)
    bounds = [start + round(k * length / n) for k in range(n + 1)]
    return list(itertools.pairwise(bounds))


def measure_windows(
    env_db: np.ndarray,
    threshold_db: float,
    read: Callable[[int, int], np.ndarray],
    hop: int,
    rate: int,
    *,
    device: str = "cpu",
) -> SourceVoices:
    """Steps 1-2 for one recording: its windows with voice prints and held-tone shares (not judged yet).

    ``read(start_sample, stop_sample)`` returns mono float32 at ``rate``; ``hop`` samples per frame.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=MEASURE_THREADS):
        return _measure_windows(env_db, threshold_db, read, hop, rate, device)


def _measure_windows(env_db, threshold_db, read, hop: int, rate: int, device: str) -> SourceVoices:
    frame_s = hop / rate
    voices = SourceVoices(frames_per_second=1 / frame_s)
    max_unit = round(MAX_UNIT_S / frame_s)
    pending: list[tuple[Window, np.ndarray]] = []
    pending_frames = 0
    for index, (start, end) in enumerate(sound_units(env_db, threshold_db, frame_s)):
        for lo in range(start, end, max_unit):
            hi = min(end, lo + max_unit)
            spans = unit_windows(lo, hi, frame_s)
            if not spans:
                voices.windows.append(Window(lo, hi, index))
                continue
            mels, held = _stretch_features(read(lo * hop, hi * hop), rate)
            for a, b in spans:
                w = Window(a, b, index, music_share=_share(held, a - lo, b - lo, frame_s))
                voices.windows.append(w)
                pending.append((w, mels[a - lo : b - lo]))
                pending_frames += b - a
            if pending_frames * frame_s >= BATCH_AUDIO_S:
                _embed(pending, device)
                pending, pending_frames = [], 0
    _embed(pending, device)
    return voices


def _stretch_features(audio: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """The encoder's mel frames (10 ms) and the held-tone frames (``music.HOP``) of one stretch."""
    from voicelab.audio import resample

    audio16 = resample(np.asarray(audio, dtype=np.float32), rate, quality.SAMPLE_RATE)
    return quality.voice_mels(audio16), music.held_tone_frames(audio16)


def _share(held: np.ndarray, a: int, b: int, frame_s: float) -> float:
    """Held-tone share of envelope frames ``[a, b)`` of a stretch, from its held-tone frames."""
    scale = frame_s * music.SAMPLE_RATE / music.HOP
    lo, hi = int(a * scale), max(int(a * scale) + 1, int(b * scale))
    part = held[lo:hi]
    return float(np.mean(part)) if len(part) else 0.0


def _embed(pending: list[tuple[Window, np.ndarray]], device: str) -> None:
    if not pending:
        return
    embeddings = quality.embed_mel_windows([m for _, m in pending], device=device)
    for (w, _), e in zip(pending, embeddings, strict=True):
        w.embedding = e


def judge(voices: SourceVoices, reference: np.ndarray, threshold: float = SPEAKER_THRESHOLD) -> None:
    """Step 3: label every window against ``reference`` (a unit voice print).

    Music: a window whose own held-tone share reaches ``music.ALONE_SHARE`` is music; a window lies over
    a music bed when the median share of the windows around it (``BED_CONTEXT_S`` either side) reaches
    ``music.BED_SHARE``, and is then the character's from ``BED_SIMILARITY_ALLOWANCE`` under the threshold. The median, because one window of speech alone can hold a steady
    vowel (espeak-ng's reach 0.47), while a bed plays under every window around it.
    """
    ref = np.asarray(reference, dtype=np.float32)
    bed = _bed_context(voices)
    for k, w in enumerate(voices.windows):
        if w.embedding is None:
            w.similarity, w.label = None, SHORT
            continue
        w.similarity = float(w.embedding @ ref)
        needed = threshold - BED_SIMILARITY_ALLOWANCE if bed[k] else threshold
        if w.similarity >= needed and w.music_share < music.ALONE_SHARE:
            w.label = MUSIC_BED if bed[k] else KEEP
        else:
            w.label = MUSIC if (w.music_share >= music.ALONE_SHARE or bed[k]) else OTHER
    _drop_changes_inside_units(voices.windows)


BED_CONTEXT_S = 15.0
"""Seconds of sound either side of a window over which a music bed is judged."""
BED_SIMILARITY_ALLOWANCE = 0.05
"""Over a music bed the threshold is this much lower: a bed 15 dB under the speech lowers every voice's
similarity (the character's windows 0.74-0.84 over it, against 0.78-0.93 clean; the other voices
0.57-0.68 over it), and 0.70 still lies between them (docs/benchmarks.md)."""


def _bed_context(voices: SourceVoices) -> list[bool]:
    judged = [w for w in voices.windows if w.embedding is not None]
    centres = np.array([(w.start + w.end) / 2 for w in judged], np.float64)
    shares = np.array([w.music_share for w in judged], np.float64)
    reach = BED_CONTEXT_S * voices.frames_per_second
    out, k = [], 0
    for w in voices.windows:
        if w.embedding is None:
            out.append(False)
            continue
        near = np.abs(centres - centres[k]) <= reach
        out.append(bool(np.median(shares[near]) >= music.BED_SHARE))
        k += 1
    return out


def _drop_changes_inside_units(windows: list[Window]) -> None:
    """A window of the character that touches another voice's window in the same unit is dropped: the
    change of voice lies somewhere inside one of them, or the other voice's window was misjudged as the
    character's (a window of en-us+klatt reached 0.775 beside its own windows at 0.72). Keeping the far
    half of such windows kept 5 points more of the music take, and let 4 clips of 40 hold two voices."""
    mine = (KEEP, MUSIC_BED)
    near_change = set()
    for k in range(1, len(windows)):
        a, b = windows[k - 1], windows[k]
        if a.unit == b.unit and a.end == b.start and (a.label in mine) != (b.label in mine):
            near_change.add(k - 1 if a.label in mine else k)
    for k in near_change:
        windows[k].label = SHORT


def clip_similarity(voices: SourceVoices, start: int, end: int, reference: np.ndarray) -> float:
    """A clip's similarity to the character: the mean of its windows' voice prints (weighted by the
    frames each has inside ``[start, end)``) against ``reference``; ``nan`` when no window was judged."""
    inside = [w for w in voices.windows if w.embedding is not None and w.start < end and w.end > start]
    if not inside:
        return float("nan")
    weights = np.array([min(w.end, end) - max(w.start, start) for w in inside], np.float64)
    mean = np.average(np.stack([w.embedding for w in inside]), axis=0, weights=weights)
    norm = float(np.linalg.norm(mean))
    return float(mean @ reference / norm) if norm > 0 else float("nan")


def plan_clips(env_db: np.ndarray, params: segment.SplitParams, voices: SourceVoices, keep: Sequence[str]):
    """Step 4: clips planned inside each region of kept windows (``segment.plan_clips`` on each), so no
    clip crosses a dropped stretch; an edge at such a stretch is marked ``segment.CUT_VOICE``."""
    clips: list[segment.Span] = []
    dropped = 0
    for region in voices.regions(len(env_db), keep):
        sub = segment.plan_clips(env_db[region.start : region.end], params)
        dropped += sub.dropped_speech_frames
        if not sub.clips:
            continue
        first, last = sub.pieces[0].start, sub.pieces[-1].end
        for span in sub.clips:
            start_cut = segment.CUT_VOICE if region.cut_before and span.start == first else span.start_cut
            end_cut = segment.CUT_VOICE if region.cut_after and span.end == last else span.end_cut
            clips.append(segment.Span(region.start + span.start, region.start + span.end, start_cut, end_cut))
    return segment.Plan(clips=clips, total_frames=len(env_db), dropped_speech_frames=dropped)


@dataclass(frozen=True)
class Selection:
    """What prepare-audio keeps of a recording: the character's voice, and the music rule."""

    reference: np.ndarray
    threshold: float = SPEAKER_THRESHOLD
    keep_music_bed: bool = False
    device: str = "cpu"

    @property
    def keep_labels(self) -> tuple[str, ...]:
        return (KEEP, MUSIC_BED) if self.keep_music_bed else (KEEP,)


def select_clips(
    env_db: np.ndarray,
    threshold_db: float,
    params: segment.SplitParams,
    selection: Selection,
    voices: SourceVoices,
) -> segment.Plan:
    """Judge ``voices`` (a recording's measured windows) against the character and plan its clips."""
    judge(voices, selection.reference, selection.threshold)
    return plan_clips(env_db, params, voices, selection.keep_labels)


# ---------------------------------------------------------------------------------------- --speaker auto

CLUSTER_SIMILARITY = 0.70
"""Windows of one voice join while their average similarity reaches this (average linkage): one espeak-ng
voice's windows score 0.75-0.93 with each other, different voices 0.45-0.72."""
MAX_CLUSTERED_WINDOWS = 2000
"""Windows clustered at once (the longest ones; a distance matrix of 2000 is 16 MB); the others join the
nearest voice found."""
MIN_VOICE_S = 10.0
"""A voice found with less than this across the folder is not listed (stray windows of music, noise)."""


@dataclass(frozen=True)
class FoundVoice:
    """A voice ``--speaker auto`` found: its voice print and how long it speaks across the folder."""

    embedding: np.ndarray
    seconds: float


def find_voices(sources: Sequence[SourceVoices]) -> list[FoundVoice]:
    """The voices speaking in ``sources``, most speech first (windows of music alone left out)."""
    from scipy.cluster.hierarchy import fcluster, linkage

    windows = [
        w for v in sources for w in v.windows if w.embedding is not None and w.music_share < music.ALONE_SHARE
    ]
    if not windows:
        return []
    fps = sources[0].frames_per_second
    order = sorted(range(len(windows)), key=lambda k: -windows[k].length)[:MAX_CLUSTERED_WINDOWS]
    emb = np.stack([windows[k].embedding for k in order])
    if len(emb) > 1:
        tree = linkage(emb.astype(np.float64), method="average", metric="cosine")
        labels = fcluster(tree, t=1 - CLUSTER_SIMILARITY, criterion="distance")
    else:
        labels = np.ones(1, int)
    centroids = np.stack([quality.unit_rows(emb[labels == c].mean(axis=0)) for c in np.unique(labels)])
    every = np.stack([w.embedding for w in windows])
    nearest = np.argmax(every @ centroids.T, axis=1)
    seconds = np.bincount(nearest, weights=[w.length / fps for w in windows], minlength=len(centroids))
    found = [
        FoundVoice(quality.unit_rows(every[nearest == c].mean(axis=0)), float(seconds[c]))
        for c in range(len(centroids))
        if seconds[c] >= MIN_VOICE_S or seconds[c] == seconds.max()
    ]
    return sorted(found, key=lambda v: -v.seconds)


# ------------------------------------------------------------------------------------------ references

MIN_REFERENCE_S = 2.0
"""Seconds of sound a reference needs: one encoder window and more, so its voice print is stable."""
REFERENCE_SILENCE_DBFS = -60.0
"""A reference whose loudest 10 ms frame is under this holds no voice."""
TWO_VOICES_BELOW = 0.70
"""A window of a reference this unlike the rest of it (or one reference this unlike another) is a second
voice: 1.0-1.6 s windows of the character score 0.72-0.93 against its voice, another voice 0.54-0.76."""
TWO_VOICES_WINDOW_S = 1.0
"""Only windows this long take part in that check (shorter ones vary more within one voice)."""


class ReferenceError(UsageError):
    """A reference recording that cannot stand for the character; the message names it and what to do."""


@dataclass(frozen=True)
class VoiceReference:
    """The character's voice print, and where it came from (for the summary)."""

    embedding: np.ndarray
    sources: tuple[str, ...]
    seconds: float


def reference_windows(path: Path, *, device: str = "cpu") -> tuple[np.ndarray, float, np.ndarray]:
    """Voice prints of one reference recording's windows, its seconds of sound and the windows' lengths
    (10 ms frames); ``ReferenceError``
    for a file that is missing, not audio, silent or too short."""
    from voicelab.audio import AudioError, read_audio

    what = f"--reference {path}"
    if not Path(path).is_file():
        raise ReferenceError(f"{what}: no such file; pass a recording of the character (WAV, MP3, FLAC, ...)")
    try:
        audio, rate = read_audio(path, quality.SAMPLE_RATE)
    except AudioError as e:
        raise ReferenceError(f"{what}: not usable audio ({e}); pass a recording of the character") from e
    hop = segment.frame_hop(rate)
    builder = segment.EnvelopeBuilder(hop)
    builder.add(audio)
    env = builder.finish()
    if not len(env) or float(env.max()) < REFERENCE_SILENCE_DBFS:
        raise ReferenceError(f"{what}: holds silence only; pass a recording of the character speaking")
    threshold, _ = segment.choose_threshold(env, DEFAULT_THRESHOLD_DB)
    frame_s = hop / rate
    units = sound_units(env, threshold, frame_s)
    sound_s = sum(e - s for s, e in units) * frame_s
    if sound_s < MIN_REFERENCE_S:
        raise ReferenceError(
            f"{what}: holds {sound_s:.1f} s of sound, under the {MIN_REFERENCE_S:g} s a reference needs; "
            "pass a longer recording of the character (10-30 s of clean speech works well)"
        )
    spans = [w for s, e in units for w in unit_windows(s, e, frame_s)]
    mels = quality.voice_mels(audio)
    lengths = np.array([b - a for a, b in spans])
    return quality.embed_mel_windows([mels[a:b] for a, b in spans], device=device), sound_s, lengths


def _two_voices(emb: np.ndarray) -> bool:
    """Is one window unlike the voice of all the others (each against the mean of the rest)?"""
    if len(emb) < 2:
        return False
    total = emb.sum(axis=0)
    rest = quality.unit_rows(total[None, :] - emb)
    return bool(np.min(np.sum(emb * rest, axis=1)) < TWO_VOICES_BELOW)


def load_reference(paths: Sequence[Path], *, device: str = "cpu") -> VoiceReference:
    """The character's voice print from one or more reference recordings (the mean of all their windows).

    Raises ``ReferenceError`` naming the file for a missing, unreadable, silent or too short reference,
    and for references that hold two voices (within one file or between files).
    """
    prints, seconds = [], 0.0
    for path in paths:
        emb, sound_s, lengths = reference_windows(Path(path), device=device)
        if _two_voices(emb[lengths >= TWO_VOICES_WINDOW_S * 100]):
            raise ReferenceError(
                f"--reference {path}: holds two voices (stretches of it are unlike each other); pass a "
                "recording of the character alone, e.g. one turn cut from an interview"
            )
        prints.append(emb)
        seconds += sound_s
    means = [quality.unit_rows(p.mean(axis=0)) for p in prints]
    for k in range(1, len(means)):
        if float(means[0] @ means[k]) < TWO_VOICES_BELOW:
            raise ReferenceError(
                f"--reference {paths[k]}: a different voice from --reference {paths[0]}; pass recordings "
                "of the character only"
            )
    embedding = quality.unit_rows(np.concatenate(prints).mean(axis=0))
    return VoiceReference(embedding, tuple(str(p) for p in paths), seconds)
