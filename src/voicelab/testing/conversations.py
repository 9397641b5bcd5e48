"""Recordings with more than one voice, and music, made offline, with the truth of who speaks when.

For tests and benchmarks of prepare-audio's speaker selection (``--reference``, ``--speaker auto``) and
its music handling. Every turn is spoken by espeak-ng on its own, trimmed to its sound, and laid end to
end with the pause asked for, so each voice's speech is known to the sample.

Music is synthesised here, never downloaded: a four-chord progression (each chord three sawtooth-like
voices with their harmonics, a slow attack and release, a sine bass an octave down) over a drum loop
(a pitched-down sine "kick" on beats 1 and 3, a noise-burst "snare" on 2 and 4, a short high-passed
noise "hi-hat" on every eighth note) at 100 bpm. It is tonal, rhythmic and continuous, as a music bed is.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from voicelab.testing.espeak import speak

RATE = 22_050  # espeak-ng's native rate
TRIM_DBFS = -50.0
"""espeak-ng pads its output with silence; samples are trimmed to the first/last 10 ms frame over this."""
TRIM_FRAME_S = 0.010

TARGET_VOICE = "en-us"
"""The character in every built conversation: espeak-ng's default American male voice."""
OTHER_VOICES = ("en-us+f3", "en-gb-x-rp+f2", "en-us+klatt")
"""Voices the GE2E speaker encoder tells apart from ``TARGET_VOICE`` (a female variant, a female British
variant, the Klatt synthesiser's male voice)."""
SAME_SPEAKER_VOICES = ("en-gb-x-rp", "en-us+croak")
"""Variants of ``TARGET_VOICE`` the encoder scores as the same speaker (another accent of the one voice,
the same voice with a rough edge): not usable as "another voice" in a test."""

TARGET_LINES = (
    "I grew up in a small town by the sea, and every summer the fishing boats came in late.",
    "My father used to say that the weather tells you everything, if you listen to it long enough.",
    "We built a little workshop behind the house, and that is where I learned to fix old radios.",
    "Honestly, the hardest part of the job was waiting for parts that never seemed to arrive.",
    "When the storm came through that year, we lost the roof of the barn and half the garden.",
    "I still remember the smell of the harbour in the morning, salt and diesel and fresh bread.",
    "People think it was a quiet life, but there was always something that needed doing.",
    "After school I moved to the city, and for a long time I did not go back at all.",
    "The first apartment I rented had a window that looked straight onto a brick wall.",
    "It took me years to understand why my mother kept every letter she ever received.",
    "We started recording the show in a spare bedroom, with blankets on the walls.",
    "The trick with an interview is to stop talking and let the silence do the work.",
)
OTHER_LINES = (
    "That is fascinating, tell me more about the town itself.",
    "So what happened after that, did you ever rebuild it?",
    "I think a lot of our listeners will recognise that feeling.",
    "Let us take a quick look back at where it all started for you.",
    "And how did your family feel about the move to the city?",
    "We have a few questions from the audience about the workshop.",
)
INTERJECTIONS = ("Really?", "Oh wow.", "Right.", "Mm, yes.", "No way!")

MUSIC_BPM = 100
CHORDS_HZ = (  # C major, A minor, F major, G major (root position, octave 4)
    (261.63, 329.63, 392.00),
    (220.00, 261.63, 329.63),
    (174.61, 220.00, 261.63),
    (196.00, 246.94, 293.66),
)
CHORD_HARMONICS = 5
MUSIC_PEAK = 0.5


@dataclass(frozen=True)
class Turn:
    """A stretch of one voice in a built recording: seconds from its start, its voice, its text."""

    voice: str
    start_s: float
    end_s: float
    text: str

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass
class Recording:
    """A built recording and its truth: per-sample voice labels and the turns."""

    path: Path
    rate: int
    turns: list[Turn] = field(default_factory=list)
    voices: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))
    """Per frame (``frame_s``, about 10 ms): -1 silence or music only, else the index into ``voice_names`` of who speaks."""
    voice_names: tuple[str, ...] = ()
    music: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    """Per frame: music is playing."""

    @property
    def frame_s(self) -> float:
        """Seconds per truth frame: a whole number of samples, ``round(TRIM_FRAME_S * rate)`` (220 at
        22.05 kHz: 9.977 ms, so frame ``i`` is NOT at ``i * 10 ms``; 0.18 s apart by minute 1:18)."""
        return round(TRIM_FRAME_S * self.rate) / self.rate

    def frame(self, seconds: float) -> int:
        """The truth frame at ``seconds`` into the recording."""
        return round(seconds / self.frame_s)

    def speech_frames(self, voice: str) -> np.ndarray:
        return self.voices == self.voice_names.index(voice)


def _spoken(text: str, voice: str, work: Path, rate: int) -> np.ndarray:
    import soundfile as sf

    from voicelab.audio import resample

    wav = speak([text], work / "turn.wav", voice=voice)
    audio, sr = sf.read(wav, dtype="float32")
    audio = resample(audio, sr, rate) if sr != rate else audio
    hop = round(TRIM_FRAME_S * rate)
    n = len(audio) // hop
    level = 10 * np.log10(np.mean(audio[: n * hop].reshape(n, hop).astype(np.float64) ** 2, axis=1) + 1e-20)
    loud = np.flatnonzero(level > TRIM_DBFS)
    if not len(loud):
        raise RuntimeError(f"espeak-ng made no sound for {text!r} with voice {voice}")
    return audio[loud[0] * hop : (loud[-1] + 1) * hop]


def build_recording(
    parts: Sequence[tuple[str, str] | float],
    path: Path,
    *,
    rate: int = RATE,
    music_intro_s: float = 0.0,
    music_bed_db: float | None = None,
    channels: int = 1,
    seed: int = 0,
) -> Recording:
    """Speak ``parts`` (``(voice, text)`` turns and pauses in seconds) into ``path`` (16-bit WAV).

    ``music_intro_s`` of music alone come first; with ``music_bed_db`` the music goes on under all the
    speech, that many dB under the speech's RMS. Returns the recording with its per-frame truth.
    """
    import soundfile as sf

    hop = round(TRIM_FRAME_S * rate)
    intro = round(music_intro_s / TRIM_FRAME_S) * hop
    speech, labels = _speak_parts(parts, rate, hop, intro)
    names = tuple(dict.fromkeys(v for _, _, v, _ in labels))
    frames = len(speech) // hop
    voices = np.full(frames, -1, np.int8)
    for lo, hi, voice, _ in labels:
        voices[lo // hop : hi // hop] = names.index(voice)
    voices[_silent_frames(speech, hop)[:frames]] = -1  # pauses inside a turn are nobody's speech
    music = np.zeros(frames, bool)
    mix = speech
    if music_intro_s > 0 or music_bed_db is not None:
        bed = music_track(len(speech), rate, seed=seed)
        if music_bed_db is None:
            bed[intro:] = 0.0
        else:
            voiced = speech[intro:][np.abs(speech[intro:]) > 0]
            speech_rms = float(np.sqrt(np.mean(voiced.astype(np.float64) ** 2))) if len(voiced) else 0.1
            bed_rms = float(np.sqrt(np.mean(bed.astype(np.float64) ** 2)))
            scale = speech_rms * 10 ** (-music_bed_db / 20) / bed_rms
            bed[intro:] *= scale
            bed[:intro] *= scale * 10 ** (music_bed_db / 20) / 2  # the intro plays louder than the bed
            music[:] = True
        music[: intro // hop] = True
        mix = speech + bed
    peak = float(np.max(np.abs(mix))) or 1.0
    mix = (mix * min(1.0, 0.9 / peak)).astype(np.float32)
    out = np.repeat(mix[:, None], channels, axis=1) if channels > 1 else mix
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, out, rate, subtype="PCM_16")
    return Recording(path, rate, _merge_turns(labels, rate), voices, names, music)


def _speak_parts(
    parts: Sequence[tuple[str, str] | float], rate: int, hop: int, intro: int
) -> tuple[np.ndarray, list[tuple[int, int, str, str]]]:
    """``intro`` samples of silence, then each turn spoken and each pause, whole frames of ``hop``; with
    each turn's (sample start, end, voice, text)."""
    pieces: list[np.ndarray] = [np.zeros(intro, np.float32)]
    labels: list[tuple[int, int, str, str]] = []
    at = intro
    with tempfile.TemporaryDirectory(prefix="voicelab-conv-") as work:
        for part in parts:
            if isinstance(part, (int, float)):
                n = round(float(part) / TRIM_FRAME_S) * hop
                pieces.append(np.zeros(n, np.float32))
                at += n
                continue
            voice, text = part
            audio = _spoken(text, voice, Path(work), rate)
            pieces.append(audio)
            labels.append((at, at + len(audio), voice, text))
            at += len(audio)
    return np.concatenate(pieces), labels


def _merge_turns(labels: list[tuple[int, int, str, str]], rate: int) -> list[Turn]:
    """Consecutive sentences of one voice are one turn (the pauses between them included)."""
    turns: list[Turn] = []
    for lo, hi, voice, text in labels:
        if turns and turns[-1].voice == voice:
            last = turns[-1]
            turns[-1] = Turn(voice, last.start_s, hi / rate, f"{last.text} {text}")
        else:
            turns.append(Turn(voice, lo / rate, hi / rate, text))
    return turns


def _silent_frames(audio: np.ndarray, hop: int) -> np.ndarray:
    n = len(audio) // hop
    level = 10 * np.log10(np.mean(audio[: n * hop].reshape(n, hop).astype(np.float64) ** 2, axis=1) + 1e-20)
    return level < TRIM_DBFS


def music_track(n_samples: int, rate: int, *, seed: int = 0) -> np.ndarray:
    """``n_samples`` of the synthesised music (see the module docstring), peak ``MUSIC_PEAK``, float32."""
    rng = np.random.default_rng(seed)
    beat = round(rate * 60 / MUSIC_BPM)
    bar = 4 * beat
    t_bar = np.arange(bar) / rate
    attack = np.minimum(1.0, t_bar / 0.05) * np.exp(-t_bar / 3.0)
    loops = []
    for chord in CHORDS_HZ:
        tone = np.zeros(bar)
        for f in chord:
            for k in range(1, CHORD_HARMONICS + 1):
                tone += np.sin(2 * np.pi * f * k * t_bar + rng.uniform(0, 2 * np.pi)) / k
        tone += 1.5 * np.sin(2 * np.pi * chord[0] / 2 * t_bar)  # bass
        tone *= attack
        drums = np.zeros(bar)
        t_beat = np.arange(beat) / rate
        kick = np.sin(2 * np.pi * (60 + 90 * np.exp(-t_beat / 0.03)) * t_beat) * np.exp(-t_beat / 0.12)
        snare = rng.standard_normal(beat) * np.exp(-t_beat / 0.06)
        for b in range(4):
            drums[b * beat : (b + 1) * beat] += 3.0 * (kick if b % 2 == 0 else 0.8 * snare)
        hat_len = beat // 2
        hat = np.diff(rng.standard_normal(hat_len + 1)) * np.exp(-np.arange(hat_len) / rate / 0.015)
        for e in range(8):
            drums[e * hat_len : (e + 1) * hat_len] += 0.5 * hat
        loops.append(tone + drums)
    song = np.concatenate(loops)
    reps = int(np.ceil(n_samples / len(song)))
    track = np.tile(song, reps)[:n_samples]
    return (track * MUSIC_PEAK / max(float(np.max(np.abs(track))), 1e-9)).astype(np.float32)


def conversation_parts(
    others: Sequence[str],
    *,
    turns: int = 12,
    seed: int = 0,
    target: str = TARGET_VOICE,
) -> list[tuple[str, str] | float]:
    """A talk in which ``target`` alternates with ``others``: long turns of one or two sentences, a short
    interjection ("Really?") between some of the target's turns, pauses of 0.15-0.6 s between turns and
    0.3-0.5 s between the sentences of one turn."""
    rng = np.random.default_rng(seed)
    parts: list[tuple[str, str] | float] = []
    lines = iter(rng.permutation(TARGET_LINES).tolist() * 4)
    other_lines = iter(rng.permutation(OTHER_LINES).tolist() * 8)

    def gap() -> float:
        return round(float(rng.uniform(0.15, 0.6)), 2)

    for k in range(turns):
        parts.append((target, next(lines)))
        if rng.random() < 0.5:
            parts += [round(float(rng.uniform(0.3, 0.5)), 2), (target, next(lines))]
        parts.append(gap())
        other = others[k % len(others)]
        if k % 3 == 1:  # a short interjection, by each other voice in turn
            parts += [(other, str(rng.choice(INTERJECTIONS))), gap()]
        else:
            parts += [(other, next(other_lines)), gap()]
    return parts[:-1]


MIN_TURN_S = 3.0
"""The character's turns from this long count for the kept-speech share (shorter ones may be dropped)."""
VOICE_IN_CLIP_FRAMES = 3
"""A voice is in a clip when at least 30 ms of its sound (over ``TRIM_DBFS``) lies inside it: a fading
tail of a few milliseconds at a clip's edge is not a voice a listener hears."""


@dataclass
class Score:
    """How well a set of clips keeps one voice out of built recordings."""

    character_kept: float
    """Share of the character's speech in turns of ``MIN_TURN_S`` or more that lies inside clips."""
    other_share: float
    """Share of the speech inside clips that belongs to another voice."""
    two_voice_clips: list[str]
    music_only_clips: list[str]
    clips: int

    def __str__(self) -> str:
        return (
            f"{self.clips} clips: character kept {self.character_kept:.1%}, other voices "
            f"{self.other_share:.2%} of kept speech, {len(self.two_voice_clips)} two-voice clips, "
            f"{len(self.music_only_clips)} music-only clips"
        )


def score(recordings: Sequence[Recording], rows: Sequence[dict], target: str = TARGET_VOICE) -> Score:
    """Score manifest ``rows`` (``source``, ``start_s``, ``end_s``, ``clip``) against the recordings' truth
    (rows are matched to a recording by its file name)."""
    long_target = kept_long = other_in = speech_in = 0
    two, music_only = [], []
    for rec in recordings:
        frames = len(rec.voices)
        kept = np.zeros(frames, bool)
        for row in (r for r in rows if Path(r["source"]).name == rec.path.name):
            lo, hi = rec.frame(float(row["start_s"])), rec.frame(float(row["end_s"]))
            kept[lo:hi] = True
            present = [
                v
                for v in range(len(rec.voice_names))
                if np.sum(rec.voices[lo:hi] == v) >= VOICE_IN_CLIP_FRAMES
            ]
            if len(present) > 1:
                two.append(row["clip"])
            if not present and rec.music[lo:hi].any():
                music_only.append(row["clip"])
        spoken = rec.voices >= 0
        other = (
            spoken & (rec.voices != rec.voice_names.index(target)) if target in rec.voice_names else spoken
        )
        other_in += int(np.sum(other & kept))
        speech_in += int(np.sum(spoken & kept))
        mine = np.zeros(frames, bool)
        for turn in rec.turns:
            if turn.voice == target and turn.duration_s >= MIN_TURN_S:
                mine[rec.frame(turn.start_s) : rec.frame(turn.end_s)] = True
        mine &= rec.speech_frames(target) if target in rec.voice_names else False
        long_target += int(np.sum(mine))
        kept_long += int(np.sum(mine & kept))
    return Score(
        character_kept=kept_long / long_target if long_target else 1.0,
        other_share=other_in / speech_in if speech_in else 0.0,
        two_voice_clips=two,
        music_only_clips=music_only,
        clips=len(rows),
    )
