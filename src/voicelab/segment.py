"""Where to cut long recordings into training clips: pure maths on a frame loudness envelope.

Audio is summarised as one RMS level (dBFS) per ``FRAME_SECONDS`` frame, which is tiny even for hours of
audio (360 000 floats per hour). Every decision below is made on that envelope; positions are frame
indices and spans are half-open ``[start, end)``, so a span covers samples ``[start * hop, end * hop)``.

The plan, in order:

1. **Pauses**: maximal runs of frames under the silence threshold that last at least ``pause_frames``.
   Each pause gets one cut point, its quietest frame (away from its edges when it is long enough).
2. **Units**: the speech between two pauses, trimmed to ``pad_frames`` of the pause on either side (a
   short natural pad, never past the cut point).
3. **Long units** (over ``max_frames``) are split where both parts keep ``min_frames``: at the longest
   internal shorter pause (its quietest frame), and only where there is none at the quietest frame.
4. **Packing**: a dynamic programme groups consecutive pieces into clips within ``[min_frames, max_frames]``,
   first keeping as much speech as possible, then putting as little pause inside clips as possible
   (so it cuts at the longest pauses, and splits speech at a short pause or a forced cut only when needed).
   Pieces are never joined across a pause longer than ``max_join_frames``; a piece that cannot reach the
   minimum length with its neighbours is dropped and counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

FRAME_SECONDS = 0.010
"""Envelope resolution: 10 ms, fine enough to place a cut, coarse enough to be tiny for hours of audio."""
PAD_SECONDS = 0.150
"""Pause kept before the first and after the last sound of a clip: a natural breath of room tone."""
FADE_SECONDS = 0.010
"""Fade-in/out at clip edges: removes the click of starting on a non-zero sample, inaudible otherwise."""
MAX_JOIN_PAUSE_SECONDS = 2.0
"""Longest pause allowed inside a clip (or twice the pause length, if larger): a 5 s silence in the
middle of a training clip teaches the model to stall."""
DB_FLOOR = -200.0
"""Level given to digital silence (log of zero); far below any threshold a user would set."""

# Quiet recordings: a fixed threshold (the guide's -40 dBFS) that sits too close to the recording's own
# speech level falls inside speech (the quiet ends of words), and cuts there. Then the threshold follows
# the recording instead: ADAPTIVE_DEPTH_DB under its loud speech level, as -40 dBFS is for speech that
# peaks near -10 dBFS, but never into its noise floor.
SPEECH_LEVEL_PERCENTILE = 95
"""The recording's loud speech level: this percentile of its frame levels (digital silence left out)."""
MIN_THRESHOLD_DEPTH_DB = 20.0
"""The fixed threshold is kept while it is at least this far under the loud speech level (word endings
fade 20-30 dB under a word's peak; closer than 20 dB the threshold catches them)."""
ADAPTIVE_DEPTH_DB = 30.0
"""An adaptive threshold sits this far under the loud speech level."""
NOISE_FLOOR_PERCENTILE = 10
"""The recording's noise floor: this percentile of its frame levels (its quietest pauses)."""
NOISE_MARGIN_DB = 6.0
"""An adaptive threshold stays this far above the noise floor, so pauses still read as silence."""
MIN_SPEECH_OVER_FLOOR_DB = 20.0
"""The adaptive threshold is used only where the loud level stands at least this far over the noise
floor. Speech swings its 10 ms levels over 30 dB and more between syllables and pauses; steady noise
alone (room tone, hiss, pink noise) spreads them over a few dB (pink noise: ~4 dB between these two
percentiles, docs/benchmarks.md), and an adaptive threshold there would call the noise speech."""
METHOD_FIXED = "fixed"
METHOD_ADAPTIVE = "adaptive"

# How a clip edge was cut, written to the manifest so odd clips can be found and checked.
CUT_FILE_EDGE = "file-edge"
CUT_PAUSE = "pause"
CUT_SHORT_PAUSE = "short-pause"
CUT_FORCED = "forced"
CUT_VOICE = "voice-change"
"""An edge where another voice or music was cut away (prepare-audio --reference / --speaker auto)."""


def frame_hop(sample_rate: int) -> int:
    """Samples per envelope frame at ``sample_rate`` (240 at 24 kHz)."""
    return max(1, round(sample_rate * FRAME_SECONDS))


def power_to_db(mean_square: np.ndarray | float) -> np.ndarray:
    """Mean square power -> dBFS (full-scale sine-free convention: RMS 1.0 is 0 dBFS), floored."""
    power = np.maximum(np.asarray(mean_square, dtype=np.float64), 10 ** (DB_FLOOR / 10))
    return 10.0 * np.log10(power)


def rms_dbfs(audio: np.ndarray) -> float:
    """RMS level of ``audio`` (any shape, float in [-1, 1]) in dBFS; ``DB_FLOOR`` for silence or no samples."""
    flat = np.asarray(audio, dtype=np.float64).ravel()
    if flat.size == 0:
        return DB_FLOOR
    # einsum: one pass, no squared copy, and no BLAS threads (np.dot's spin-wait on a busy machine)
    return float(power_to_db(np.einsum("i,i->", flat, flat) / flat.size))


def peak_dbfs(audio: np.ndarray) -> float:
    """Largest absolute sample in dBFS; ``DB_FLOOR`` for silence or no samples."""
    audio = np.asarray(audio)
    if audio.size == 0:
        return DB_FLOOR
    return float(power_to_db(float(np.max(np.abs(audio))) ** 2))


class EnvelopeBuilder:
    """Frame RMS levels of a signal fed block by block (any block sizes); memory is the envelope only.

    ``add`` takes float32 ``(n,)`` samples; ``finish`` returns float32 ``(F,)`` dBFS with
    ``F = samples // hop``: a trailing partial frame (under 10 ms) is left out of every clip.
    """

    def __init__(self, hop: int) -> None:
        self.hop = hop
        self.samples = 0
        self._pending = np.zeros(0, np.float32)
        self._levels: list[np.ndarray] = []

    def add(self, samples: np.ndarray) -> None:
        samples = np.asarray(samples, dtype=np.float32)
        self.samples += len(samples)
        data = np.concatenate([self._pending, samples]) if len(self._pending) else samples
        full = len(data) // self.hop * self.hop
        if full:
            frames = data[:full].reshape(-1, self.hop)
            # Sum of squares per row, accumulated in float64, in one einsum pass (docs/benchmarks.md).
            mean_square = np.einsum("ij,ij->i", frames, frames, dtype=np.float64) / self.hop
            self._levels.append(power_to_db(mean_square).astype(np.float32))
        self._pending = data[full:].copy()

    def finish(self) -> np.ndarray:
        return np.concatenate(self._levels) if self._levels else np.zeros(0, np.float32)


@dataclass(frozen=True)
class SplitParams:
    """Cutting rules in frames; build with ``from_seconds``."""

    threshold_db: float
    min_frames: int
    max_frames: int
    pause_frames: int
    pad_frames: int
    max_join_frames: int

    @classmethod
    def from_seconds(
        cls,
        *,
        threshold_db: float,
        min_s: float,
        max_s: float,
        pause_s: float,
        frame_s: float = FRAME_SECONDS,
        pad_s: float = PAD_SECONDS,
        max_join_s: float | None = None,
    ) -> SplitParams:
        """Round so that every clip honours the bounds: min up, max down, to whole frames."""
        if not 0 < min_s < max_s:
            raise ValueError(f"need 0 < min duration < max duration, got {min_s} and {max_s}")
        if max_join_s is None:
            max_join_s = max(MAX_JOIN_PAUSE_SECONDS, 2 * pause_s)
        # A tiny tolerance so 3.0 / 0.01 = 300.00000000000006 does not round up to 301.
        eps = 1e-9
        return cls(
            threshold_db=threshold_db,
            min_frames=math.ceil(min_s / frame_s - eps),
            max_frames=math.floor(max_s / frame_s + eps),
            pause_frames=max(1, math.ceil(pause_s / frame_s - eps)),
            pad_frames=round(pad_s / frame_s),
            max_join_frames=math.floor(max_join_s / frame_s + eps),
        )


@dataclass(frozen=True)
class Span:
    """A clip to write: frames ``[start, end)`` and how each edge was cut (``CUT_*``)."""

    start: int
    end: int
    start_cut: str = CUT_PAUSE
    end_cut: str = CUT_PAUSE

    @property
    def length(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class Piece:
    """Trimmed speech between two cut points; ``before`` describes the boundary with the previous piece."""

    start: int
    end: int
    before: str
    """``CUT_*`` kind of the cut between this piece and the previous one."""
    gap_frames: int
    """Length of the pause (silent run) at that boundary; 0 for a forced cut."""
    join_cost: int
    """Cost of keeping that boundary inside a clip: the pause length for a real pause (longer pauses are
    better cut points), negative for a short pause or forced cut (better left inside a clip)."""

    @property
    def length(self) -> int:
        return self.end - self.start


@dataclass
class Plan:
    """Where the clips of one recording are, and what was left out."""

    clips: list[Span]
    total_frames: int
    dropped_speech_frames: int = 0
    """Frames of trimmed speech that could not be packed into any clip (too short, isolated)."""
    pieces: list[Piece] = field(default_factory=list)

    @property
    def clip_frames(self) -> int:
        return sum(c.length for c in self.clips)

    @property
    def silence_frames(self) -> int:
        """Frames left out as silence: pauses, leading/trailing silence, a silence-only file."""
        return self.total_frames - self.clip_frames - self.dropped_speech_frames


def choose_threshold(env_db: np.ndarray, threshold_db: float) -> tuple[float, str]:
    """The silence threshold for one recording and how it was chosen (``METHOD_*``).

    ``threshold_db`` (the user's, or the guide's -40 dBFS) unless it would fall inside the recording's
    speech; then one ``ADAPTIVE_DEPTH_DB`` under its loud speech level, kept over its noise floor and
    never above ``threshold_db``. A recording whose loud level does not stand ``MIN_SPEECH_OVER_FLOOR_DB``
    over its floor (steady noise alone) keeps ``threshold_db``. Percentiles of the envelope only: milliseconds per hour of audio.
    """
    env_db = np.asarray(env_db, dtype=np.float32)
    audible = env_db[env_db > DB_FLOOR]
    if not len(audible):
        return threshold_db, METHOD_FIXED
    loud = float(np.percentile(audible, SPEECH_LEVEL_PERCENTILE))
    if threshold_db <= loud - MIN_THRESHOLD_DEPTH_DB:
        return threshold_db, METHOD_FIXED
    floor = float(np.percentile(env_db, NOISE_FLOOR_PERCENTILE))
    if loud - floor < MIN_SPEECH_OVER_FLOOR_DB:  # no speech stands out of this floor: noise alone
        return threshold_db, METHOD_FIXED
    adaptive = max(loud - ADAPTIVE_DEPTH_DB, floor + NOISE_MARGIN_DB)
    if adaptive >= threshold_db:  # a noise floor this high leaves nothing better than the fixed one
        return threshold_db, METHOD_FIXED
    return adaptive, METHOD_ADAPTIVE


def silent_runs(env_db: np.ndarray, threshold_db: float) -> np.ndarray:
    """Maximal runs of frames under ``threshold_db``: int array ``(R, 2)`` of ``[start, end)``."""
    silent = np.asarray(env_db) < threshold_db
    edges = np.diff(np.concatenate([[0], silent.astype(np.int8), [0]]))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    return np.stack([starts, ends], axis=1) if len(starts) else np.zeros((0, 2), dtype=np.int64)


def quietest_frame(env_db: np.ndarray, lo: int, hi: int) -> int:
    """Index of the lowest level in ``env_db[lo:hi]``; among equal lows (digital silence) the most central."""
    segment = env_db[lo:hi]
    lowest = np.flatnonzero(segment == segment.min())
    centre = (hi - lo - 1) / 2
    return lo + int(lowest[np.argmin(np.abs(lowest - centre))])


def pause_cut(env_db: np.ndarray, start: int, end: int, pad_frames: int) -> int:
    """Cut point of the pause ``[start, end)``: its quietest frame, kept ``pad_frames`` from each edge
    when the pause is long enough, so both neighbouring clips can keep a full pad."""
    lo, hi = start + pad_frames, end - pad_frames
    if hi <= lo:
        lo, hi = start, end
    return quietest_frame(env_db, lo, hi)


def _split_long(env_db: np.ndarray, runs: np.ndarray, first: Piece, params: SplitParams) -> list[Piece]:
    """Split an over-long piece until every part fits ``max_frames`` (see module docstring, step 3)."""
    out: list[Piece] = []
    stack = [first]
    while stack:
        piece = stack.pop()
        if piece.length <= params.max_frames:
            out.append(piece)
            continue
        a, b = piece.start, piece.end
        lo, hi = a + params.min_frames, b - params.min_frames  # cut c in [lo, hi]: both parts >= min
        if lo > hi:  # max < 2 * min: keep a full-length left part, the rest is too short for a clip
            lo, hi = a + params.min_frames, min(a + params.max_frames, b - 1)
        inside = runs[(runs[:, 1] > lo) & (runs[:, 0] <= hi)]
        if len(inside):
            lengths = inside[:, 1] - inside[:, 0]
            longest = inside[lengths == lengths.max()]
            # Among equally long pauses the most central one, so the parts come out balanced.
            off_centre = np.abs(longest[:, 0] + longest[:, 1] - (a + b))
            run_start, run_end = longest[int(np.argmin(off_centre))]
            cut = quietest_frame(env_db, max(int(run_start), lo), min(int(run_end), hi + 1))
            gap, kind = int(run_end - run_start), CUT_SHORT_PAUSE
        else:
            cut = quietest_frame(env_db, lo, hi + 1)
            gap, kind = 0, CUT_FORCED
        # A cost below zero for every such boundary: packing keeps them inside clips when it can.
        right = Piece(cut, b, kind, gap, gap - params.pause_frames - 1)
        stack.append(right)
        stack.append(Piece(a, cut, piece.before, piece.gap_frames, piece.join_cost))
    return out


def find_pieces(env_db: np.ndarray, params: SplitParams) -> list[Piece]:
    """Steps 1-3: trimmed speech pieces, each at most ``max_frames`` long, in order."""
    env_db = np.asarray(env_db, dtype=np.float32)
    total = len(env_db)
    runs = silent_runs(env_db, params.threshold_db)
    is_pause = (runs[:, 1] - runs[:, 0]) >= params.pause_frames
    pauses = runs[is_pause]
    short_runs = runs[~is_pause]
    cuts = [pause_cut(env_db, int(s), int(e), params.pad_frames) for s, e in pauses]
    pieces: list[Piece] = []
    for k in range(len(pauses) + 1):
        region_lo = int(pauses[k - 1, 1]) if k > 0 else 0
        region_hi = int(pauses[k, 0]) if k < len(pauses) else total
        left_cut = cuts[k - 1] if k > 0 else 0
        right_cut = cuts[k] if k < len(pauses) else total
        loud = np.flatnonzero(env_db[region_lo:region_hi] >= params.threshold_db)
        if not len(loud):  # only at the file edges: a short silent run before the first pause
            continue
        speech_start, speech_end = region_lo + int(loud[0]), region_lo + int(loud[-1]) + 1
        start = max(left_cut, speech_start - params.pad_frames)
        end = min(right_cut, speech_end + params.pad_frames)
        if pieces and k > 0:
            gap = int(pauses[k - 1, 1] - pauses[k - 1, 0])
            unit = Piece(start, end, CUT_PAUSE, gap, gap)
        else:
            unit = Piece(start, end, CUT_FILE_EDGE, 0, 0)
        inner = short_runs[(short_runs[:, 0] >= speech_start) & (short_runs[:, 1] <= speech_end)]
        pieces.extend(_split_long(env_db, inner, unit, params))
    return pieces


def pack(pieces: list[Piece], params: SplitParams) -> tuple[list[tuple[int, int]], int]:
    """Step 4: group consecutive pieces into clips. Returns ``([(first, last) piece index], dropped frames)``.

    ``best[k]`` is the best ``(kept frames, -join cost)`` for the first ``k`` pieces, compared as tuples so
    kept speech always wins over cut quality. Each piece looks back only while the clip fits
    ``max_frames``, so the work is linear in the number of pieces.
    """
    n = len(pieces)
    best: list[tuple[int, int]] = [(0, 0)] * (n + 1)
    choice: list[int | None] = [None] * (n + 1)  # first piece of the clip ending at piece k-1; None: dropped
    for k in range(n):
        best[k + 1], choice[k + 1] = best[k], None
        kept = cost = 0
        for i in range(k, -1, -1):
            if i < k:
                boundary = pieces[i + 1]
                if boundary.before == CUT_PAUSE and boundary.gap_frames > params.max_join_frames:
                    break
                cost += boundary.join_cost
            length = pieces[k].end - pieces[i].start
            if length > params.max_frames:
                break
            kept += pieces[i].length
            if length >= params.min_frames:
                value = (best[i][0] + kept, best[i][1] - cost)
                if value > best[k + 1]:
                    best[k + 1], choice[k + 1] = value, i
    groups: list[tuple[int, int]] = []
    dropped = 0
    k = n
    while k > 0:
        first = choice[k]
        if first is None:
            dropped += pieces[k - 1].length
            k -= 1
        else:
            groups.append((first, k - 1))
            k = first
    groups.reverse()
    return groups, dropped


def plan_clips(env_db: np.ndarray, params: SplitParams) -> Plan:
    """Where to cut a recording whose frame levels are ``env_db`` (float ``(F,)`` dBFS)."""
    pieces = find_pieces(env_db, params)
    groups, dropped = pack(pieces, params)
    clips = []
    for first, last in groups:
        start_cut = pieces[first].before
        end_cut = pieces[last + 1].before if last + 1 < len(pieces) else CUT_PAUSE
        # "file-edge" only where the clip really begins or ends with the recording (maybe mid-sound);
        # the first and last clips otherwise start and end in trimmed silence, like any pause.
        if start_cut == CUT_FILE_EDGE and pieces[first].start > 0:
            start_cut = CUT_PAUSE
        if pieces[last].end == len(env_db):
            end_cut = CUT_FILE_EDGE
        clips.append(Span(pieces[first].start, pieces[last].end, start_cut, end_cut))
    return Plan(clips=clips, total_frames=len(env_db), dropped_speech_frames=dropped, pieces=pieces)
