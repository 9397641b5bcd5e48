"""Risk review of a dataset: which clips a human should listen to first, and why.

Whisper hallucinates on silence and music and loops on hard audio; its own per-segment numbers
(average log-probability, no-speech probability, compression ratio) and the text's speaking rate show
most of it. The audio's own measures (``voicelab.quality``) show the rest: a clip of another speaker
(low similarity to the dataset's dominant voice), background noise or music (low DNSMOS BAK), distorted
speech (low DNSMOS SIG), a speech rate far from the dataset's. The review never changes transcript.csv;
it writes a separate, riskiest-first list.
"""

from __future__ import annotations

import re
import statistics
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from voicelab.dataset import TRANSCRIPT_FILE, ClipSignals, ReviewRow

# Whisper's own decode-failure thresholds (whisper.transcribe defaults): past them Whisper itself
# considers a decode failed and retries at a higher temperature.
LOW_AVG_LOGPROB = -1.0
"""Mean token log-probability below this: the model was guessing."""
HIGH_NO_SPEECH_PROB = 0.6
"""Probability of the <|nospeech|> token above this: probably no speech, text likely invented."""
HIGH_COMPRESSION_RATIO = 2.4
"""UTF-8 bytes / zlib-compressed bytes above this: repetitive text (a decoding loop)."""

CHARS_PER_WORD = 5.7  # English: 4.7 letters per word on average + 1 space
MAX_PLAUSIBLE_CPS = 260 * CHARS_PER_WORD / 60  # 260 words/min, beyond fast speech: ~24.7 chars/s
"""More characters per second than anyone speaks: text the audio cannot hold."""
MIN_PLAUSIBLE_CPS = 30 * CHARS_PER_WORD / 60  # 30 words/min: ~2.9 chars/s
"""Fewer characters per second than even slow speech: speech in the clip is missing from the text."""
CPS_OUTLIER_FACTOR = 1.6
"""Speaking rate this many times faster or slower than the dataset median is an outlier (one speaker's
rate varies by roughly +-25% between clips, so 1.6x is about two standard deviations out)."""
MIN_CLIPS_FOR_MEDIAN = 5
"""Below this many clips the median speaking rate is not trusted; only the absolute bounds apply."""

HALLUCINATION_PHRASES = (
    "thanks for watching",
    "thank you for watching",
    "thank you so much for watching",
    "thanks for listening",
    "subscribe",
    "see you in the next video",
    "see you next time",
    "subtitles by",
    "captions by",
    "transcribed by",
    "translated by",
    "amara org",
    "www",
)
"""Phrases Whisper emits on silence or music (learned from YouTube captions), matched as whole words
after lower-casing and dropping punctuation."""

DEFAULT_SPEAKER_THRESHOLD = 0.75
"""Cosine similarity to the dominant voice under which a clip is flagged as another speaker. Resemblyzer
scores clips of one speaker ~0.8-0.95 against that speaker's centroid and other speakers mostly under
0.75 (its authors' demo threshold); a mixed dataset shows two humps in dataset_report.png, and
``--speaker-threshold`` moves the line between them."""
LOW_BAK = 2.5
"""DNSMOS background score under this: between P.835's BAK 3 "noticeable but not intrusive" and 2
"somewhat intrusive": noise or music loud enough for the model to learn it. Clean studio speech scores
~4; clean synthetic speech 2.9-4.0; speech over white noise or a music bed at -6..-20 dB under it 1.4-2.2.
"""
LOW_SIG = 2.5
"""DNSMOS speech score under this: speech "fairly" to "very" distorted (P.835 SIG 2 = fairly distorted)."""
OTHER_SPEAKER_SEVERITY = 2.0
"""Base severity of a clip under the speaker threshold: another voice teaches the model the wrong voice,
so it outranks a single Whisper doubt (1-2) and any "unlike the other clips" listing."""
SPEAKER_SEVERITY_SCALE = 10.0
"""Severity per unit of similarity under the threshold: 0.61 against 0.75 gives 2 + 1.4."""
SPEAKER_OUTLIER_SDS = 3.0
"""Over the threshold, a clip this many robust standard deviations (1.4826 x MAD) under the median
similarity is still worth a listen: the same voice in another accent or channel, or a similar voice.
Only listed in the review; ``--exclude-flagged`` leaves these in (the threshold is the confident line)."""
MAD_TO_SD = 1.4826  # median absolute deviation -> standard deviation, for normally spread values
MIN_SPEAKER_SPREAD = 0.01
"""Floor of that standard deviation: near-identical clips (one synthetic voice) would otherwise make a
0.02 difference an outlier."""
QUALITY_FLAG_PREFIXES = ("other speaker?", "background noise/music", "distorted speech")
"""Reasons of the audio-quality flags: the ones ``--exclude-flagged`` copies into excluded.csv."""

UNTAGGED_SOUND_S = 0.3
"""A non-speech sound with this much sound in it (``vocal_events.MIN_EVENT_SOUND_S``), in a clip whose
text has no tag: the model learns to make the sound at random, or to read it as the words around it."""
UNTAGGED_SOUND_SEVERITY = 1.0
"""Worth a listen (add the tag, or trim the sound), not evidence that the clip is wrong."""

# Fixed weights for signals that have no natural scale: a known hallucination phrase is strong
# evidence on its own; an empty transcript or an unknown-number clip is worth a look but ranks lower.
PHRASE_SEVERITY = 2.0
EMPTY_SEVERITY = 1.0

_NON_WORD = re.compile(r"[^\w']+")


@dataclass(frozen=True)
class SpeakerContext:
    """Each clip's similarity to the dataset's voice, and what a clip is compared against."""

    similarity: dict[str, float]
    median: float | None
    threshold: float = DEFAULT_SPEAKER_THRESHOLD
    reference: str | None = None
    """What the clips were compared with when it was not the dataset's dominant voice, as the review says
    it (``REFERENCE_CLIPS``, ``KEPT_VOICE``)."""
    spread: float = MIN_SPEAKER_SPREAD
    """Robust standard deviation of the similarities over the threshold (the dataset's voice)."""

    @classmethod
    def from_dict(cls, data: dict) -> SpeakerContext:
        """The context as ``dataclasses.asdict`` wrote it, also from files written before the reference
        had a name (``by_reference``: true or false)."""
        data = dict(data)
        if "by_reference" in data:
            data["reference"] = REFERENCE_CLIPS if data.pop("by_reference") else None
        return cls(**data)

    @property
    def outlier_below(self) -> float | None:
        """Similarity under which a clip over the threshold is unlike the rest."""
        return None if self.median is None else self.median - SPEAKER_OUTLIER_SDS * self.spread


REFERENCE_CLIPS = "the reference clips"
"""The user's ``--reference`` clips."""
KEPT_VOICE = "the voice prepare-audio kept"
"""The voice print prepare-audio saved when it kept one voice (its ``--reference`` or ``--speaker auto``)."""


def speaker_context(
    clips: Sequence[ClipSignals],
    *,
    reference=None,
    threshold: float = DEFAULT_SPEAKER_THRESHOLD,
    reference_name: str = REFERENCE_CLIPS,
) -> SpeakerContext:
    """Similarity of every clip with an embedding to ``reference`` (embeddings of the user's reference
    clips, or the voice print prepare-audio kept: ``reference_name`` says which) or, without one, to the
    dominant voice (a centroid a minority of other speakers cannot move)."""
    import numpy as np

    from voicelab.quality import cosine_similarity, dominant_speaker

    with_emb = [c for c in clips if c.embedding is not None and any(c.embedding)]
    if not with_emb:
        return SpeakerContext({}, None, threshold, reference_name if reference is not None else None)
    emb = np.asarray([c.embedding for c in with_emb], dtype=np.float32)
    target = np.asarray(reference, dtype=np.float32) if reference is not None else dominant_speaker(emb)
    sims = cosine_similarity(emb, target)
    similarity = {c.key: float(v) for c, v in zip(with_emb, sims, strict=True)}
    median = float(np.median(sims))
    voice = sims[sims >= threshold]
    mad = float(np.median(np.abs(voice - np.median(voice)))) if len(voice) else 0.0
    spread = max(MAD_TO_SD * mad, MIN_SPEAKER_SPREAD)
    return SpeakerContext(
        similarity, median, threshold, reference_name if reference is not None else None, spread
    )


@dataclass(frozen=True)
class Flag:
    reason: str
    severity: float  # >= 1; grows with how far past the threshold the number is


@dataclass
class ReviewItem:
    signals: ClipSignals
    chars_per_s: float | None
    compression_ratio: float | None
    flags: list[Flag] = field(default_factory=list)
    speaker_similarity: float | None = None
    words_per_s: float | None = None

    @property
    def risk(self) -> float:
        return sum(f.severity for f in self.flags)

    @property
    def quality_reasons(self) -> list[str]:
        """The audio-quality reasons (other speaker, noise, distortion): what excluded.csv records."""
        return [f.reason for f in self.flags if f.reason.startswith(QUALITY_FLAG_PREFIXES)]


def compression_ratio(text: str) -> float:
    """UTF-8 length over zlib-compressed length, as Whisper computes it (repetition makes it large)."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def chars_per_second(text: str, duration_s: float | None) -> float | None:
    if not duration_s or duration_s <= 0:
        return None
    return len(text) / duration_s


def find_hallucination_phrases(text: str) -> list[str]:
    words = f" {_NON_WORD.sub(' ', text.lower()).strip()} "
    return [p for p in HALLUCINATION_PHRASES if f" {p} " in words]


def median_chars_per_second(clips: Iterable[ClipSignals]) -> float | None:
    """The dataset's typical speaking rate, or ``None`` with fewer than ``MIN_CLIPS_FOR_MEDIAN`` usable clips."""
    rates = [r for c in clips if c.text and (r := chars_per_second(c.text, c.duration_s)) is not None]
    return statistics.median(rates) if len(rates) >= MIN_CLIPS_FOR_MEDIAN else None


def words_per_second(clip: ClipSignals) -> float | None:
    """Words per second of speech (pauses excluded), when the clip's speech time is known."""
    from voicelab.quality import speech_rate

    if not clip.text or not clip.speech_s:
        return None
    return speech_rate(clip.text, clip.speech_s)


def median_words_per_second(clips: Iterable[ClipSignals]) -> float | None:
    rates = [r for c in clips if (r := words_per_second(c)) is not None]
    return statistics.median(rates) if len(rates) >= MIN_CLIPS_FOR_MEDIAN else None


def assess(
    clip: ClipSignals,
    median_cps: float | None,
    speakers: SpeakerContext | None = None,
    median_wps: float | None = None,
) -> ReviewItem:
    """Every flag that applies to one clip, with the numbers behind it."""
    cps = chars_per_second(clip.text, clip.duration_s)
    ratio = clip.compression_ratio if clip.compression_ratio is not None else compression_ratio(clip.text)
    item = ReviewItem(clip, cps, ratio if clip.text else None)
    item.speaker_similarity = speakers.similarity.get(clip.key) if speakers else None
    item.words_per_s = words_per_second(clip)
    flags = item.flags
    if not clip.text:
        flags.append(Flag(f"empty transcript: no row in {TRANSCRIPT_FILE} (missed speech?)", EMPTY_SEVERITY))
    if clip.avg_logprob is not None and clip.avg_logprob < LOW_AVG_LOGPROB:
        excess = (LOW_AVG_LOGPROB - clip.avg_logprob) / abs(LOW_AVG_LOGPROB)
        flags.append(Flag(f"low avg log-prob {clip.avg_logprob:.2f} < {LOW_AVG_LOGPROB}", 1 + excess))
    if clip.no_speech_prob is not None and clip.no_speech_prob > HIGH_NO_SPEECH_PROB:
        excess = (clip.no_speech_prob - HIGH_NO_SPEECH_PROB) / (1 - HIGH_NO_SPEECH_PROB)
        flags.append(
            Flag(f"high no-speech prob {clip.no_speech_prob:.2f} > {HIGH_NO_SPEECH_PROB}", 1 + excess)
        )
    if item.compression_ratio is not None and item.compression_ratio > HIGH_COMPRESSION_RATIO:
        excess = (item.compression_ratio - HIGH_COMPRESSION_RATIO) / HIGH_COMPRESSION_RATIO
        flags.append(
            Flag(
                f"repetitive text: compression ratio {item.compression_ratio:.2f} > {HIGH_COMPRESSION_RATIO}",
                1 + excess,
            )
        )
    for phrase in find_hallucination_phrases(clip.text):
        flags.append(Flag(f"known hallucination phrase {phrase!r}", PHRASE_SEVERITY))
    if cps is not None and clip.text:
        flags.extend(_rate_flags(cps, median_cps))
    flags.extend(_quality_flags(item, speakers))
    flags.extend(_untagged_sound_flags(clip))
    if item.words_per_s is not None and median_wps and not any("speaking rate" in f.reason for f in flags):
        flags.extend(_speech_rate_flags(item.words_per_s, median_wps))
    return item


def _quality_flags(item: ReviewItem, speakers: SpeakerContext | None) -> list[Flag]:
    """Other speaker, background noise or music, distorted speech: from the clip's audio measures."""
    clip, flags = item.signals, []
    sim = item.speaker_similarity
    if speakers is not None and sim is not None:
        against = speakers.reference or f"median {speakers.median:.2f}"
        if sim < speakers.threshold:
            flags.append(
                Flag(
                    f"other speaker? similarity {sim:.2f} vs {against} (threshold {speakers.threshold:.2f})",
                    OTHER_SPEAKER_SEVERITY + SPEAKER_SEVERITY_SCALE * (speakers.threshold - sim),
                )
            )
        elif speakers.outlier_below is not None and sim < speakers.outlier_below:
            flags.append(
                Flag(
                    f"voice unlike the other clips? similarity {sim:.2f} vs median {speakers.median:.2f}",
                    min(
                        (speakers.median - sim) / (SPEAKER_OUTLIER_SDS * speakers.spread),
                        OTHER_SPEAKER_SEVERITY,
                    ),
                )
            )
    if clip.dnsmos_bak is not None and clip.dnsmos_bak < LOW_BAK:
        flags.append(
            Flag(
                f"background noise/music: BAK {clip.dnsmos_bak:.1f} < {LOW_BAK:g}",
                1 + LOW_BAK - clip.dnsmos_bak,
            )
        )
    if clip.dnsmos_sig is not None and clip.dnsmos_sig < LOW_SIG:
        flags.append(
            Flag(f"distorted speech: SIG {clip.dnsmos_sig:.1f} < {LOW_SIG:g}", 1 + LOW_SIG - clip.dnsmos_sig)
        )
    return flags


def _untagged_sound_flags(clip: ClipSignals) -> list[Flag]:
    """A long non-speech sound (a laugh, a sigh?) in a clip whose text holds no expressive tag."""
    from voicelab.dataset import normalize_tags

    if not clip.text or not clip.nonspeech_s or clip.nonspeech_s < UNTAGGED_SOUND_S:
        return []
    if normalize_tags(clip.text).tags:
        return []
    at = f" at {clip.nonspeech_at_s:.1f} s" if clip.nonspeech_at_s is not None else ""
    return [
        Flag(
            f"non-speech sound{at} ({clip.nonspeech_s:.1f} s; a laugh, sigh, cough?) but no tag in the "
            "text: add the tag (<laugh>) or trim the sound",
            UNTAGGED_SOUND_SEVERITY,
        )
    ]


def _speech_rate_flags(wps: float, median_wps: float) -> list[Flag]:
    ratio = wps / median_wps
    if ratio > CPS_OUTLIER_FACTOR or ratio < 1 / CPS_OUTLIER_FACTOR:
        severity = max(ratio, 1 / ratio) / CPS_OUTLIER_FACTOR
        return [Flag(f"speech rate {wps:.1f} words/s vs median {median_wps:.1f}", severity)]
    return []


def _rate_flags(cps: float, median_cps: float | None) -> list[Flag]:
    if cps > MAX_PLAUSIBLE_CPS:
        return [
            Flag(
                f"text too long for the audio: {cps:.1f} chars/s > {MAX_PLAUSIBLE_CPS:.1f}",
                cps / MAX_PLAUSIBLE_CPS,
            )
        ]
    if cps < MIN_PLAUSIBLE_CPS:
        return [
            Flag(
                f"text too short for the audio: {cps:.1f} chars/s < {MIN_PLAUSIBLE_CPS:.1f}",
                MIN_PLAUSIBLE_CPS / max(cps, 1e-3),
            )
        ]
    if median_cps:
        ratio = cps / median_cps
        if ratio > CPS_OUTLIER_FACTOR:
            return [
                Flag(
                    f"speaking rate {cps:.1f} chars/s is {ratio:.1f}x the median {median_cps:.1f}",
                    ratio / CPS_OUTLIER_FACTOR,
                )
            ]
        if ratio < 1 / CPS_OUTLIER_FACTOR:
            return [
                Flag(
                    f"speaking rate {cps:.1f} chars/s is {ratio:.2f}x the median {median_cps:.1f}",
                    1 / (ratio * CPS_OUTLIER_FACTOR),
                )
            ]
    return []


def review(clips: Sequence[ClipSignals], speakers: SpeakerContext | None = None) -> list[ReviewItem]:
    """Flagged clips only, riskiest first (ties by key); the speaking-rate medians are the dataset's.

    ``speakers``: each clip's similarity to the dataset's voice (``speaker_context``); computed from the
    clips' embeddings with the default threshold when not given.
    """
    if speakers is None:
        speakers = speaker_context(clips)
    median_cps = median_chars_per_second(clips)
    median_wps = median_words_per_second(clips)
    items = [assess(c, median_cps, speakers, median_wps) for c in clips]
    flagged = [i for i in items if i.flags]
    flagged.sort(key=lambda i: (-i.risk, i.signals.key))
    return flagged


def review_rows(items: Sequence[ReviewItem]) -> list[ReviewRow]:
    """The review file's rows (``PreparedDataset.write_review``) for ``items``, in their order."""
    return [
        ReviewRow(
            key=item.signals.key,
            risk=item.risk,
            reasons="; ".join(flag.reason for flag in item.flags),
            text=item.signals.text,
            duration_s=item.signals.duration_s,
            chars_per_s=item.chars_per_s,
            avg_logprob=item.signals.avg_logprob,
            no_speech_prob=item.signals.no_speech_prob,
            compression_ratio=item.compression_ratio,
            speaker_similarity=item.speaker_similarity,
            dnsmos_sig=item.signals.dnsmos_sig,
            dnsmos_bak=item.signals.dnsmos_bak,
            dnsmos_ovrl=item.signals.dnsmos_ovrl,
            words_per_s=item.words_per_s,
            nonspeech_s=item.signals.nonspeech_s,
        )
        for item in items
    ]
