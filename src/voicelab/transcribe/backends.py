"""Whisper transcribers: openai-whisper (one clip at a time) and faster-whisper (clips decoded in batches).

Both read the same options (``DecodeOptions``) and give the same ``ClipResult`` per clip; the models load
through ``voicelab.models.whisper``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from voicelab.dataset import normalize_text
from voicelab.errors import UsageError
from voicelab.models.whisper import load_whisper
from voicelab.transcribe_settings import DEFAULT_BATCH_SIZE, DEFAULT_BEAM_SIZE

WHISPER_SAMPLE_RATE = 16_000  # whisper.audio.SAMPLE_RATE: both backends take 16 kHz float32 mono arrays
WHISPER_WINDOW_S = 30.0  # whisper.audio.CHUNK_LENGTH: one decoder pass sees at most this much audio
DEFAULT_BEST_OF = 5  # whisper's CLI default: candidates sampled at each fallback temperature
MAX_TEXT_TOKENS_PER_SECOND = 10
"""Fast speech is 4-5 words a second and a word ~1.3 Whisper tokens, plus a few timestamp tokens per
segment: a decode longer than this for its audio is looping, not transcribing."""
MIN_SAMPLE_LEN = 32
"""Tokens any window may take, however short its audio (timestamps, a short phrase)."""
WHISPER_SAMPLE_LEN = 224
"""Whisper's own limit per window: half of its 448-token text context."""


class TranscribeError(UsageError):
    """A problem that stops the whole run (unknown language, a reference clip that is not there); the
    message names the input and what to do. Models that cannot load raise ``WhisperModelError``."""


def normalize_language(language: str) -> str:
    """A Whisper language code from a code or an English name (``en``, ``English``); else an error listing codes."""
    from whisper.tokenizer import LANGUAGES, TO_LANGUAGE_CODE

    key = language.strip().lower()
    if key in LANGUAGES:
        return key
    if key in TO_LANGUAGE_CODE:
        return TO_LANGUAGE_CODE[key]
    raise TranscribeError(
        f"unknown language {language!r}; use a Whisper language code: {', '.join(sorted(LANGUAGES))}"
    )


@dataclass(frozen=True)
class ClipResult:
    """One clip's transcript and Whisper's numbers for it (``None`` when Whisper produced no segment)."""

    text: str
    avg_logprob: float | None = None
    no_speech_prob: float | None = None
    compression_ratio: float | None = None


def summarize_segments(segments: Sequence) -> ClipResult:
    """Merge Whisper segments (dicts or objects with text/tokens/avg_logprob/...) into one ``ClipResult``.

    avg_logprob is the token-weighted mean; no-speech probability and compression ratio are the worst
    segment's, since one looping or invented segment is enough to spoil a clip.
    """

    def get(seg, key):
        return seg[key] if isinstance(seg, dict) else getattr(seg, key)

    if not segments:
        return ClipResult("")
    text = normalize_text("".join(get(s, "text") for s in segments))
    weights = [max(len(get(s, "tokens") or ()), 1) for s in segments]
    avg = sum(w * get(s, "avg_logprob") for w, s in zip(weights, segments, strict=True)) / sum(weights)
    return ClipResult(
        text=text,
        avg_logprob=float(avg),
        no_speech_prob=float(max(get(s, "no_speech_prob") for s in segments)),
        compression_ratio=float(max(get(s, "compression_ratio") for s in segments)),
    )


@dataclass(frozen=True)
class DecodeOptions:
    language: str = "en"
    beam_size: int = DEFAULT_BEAM_SIZE
    temperatures: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # whisper's fallback schedule
    annotations: bool = False
    """Let Whisper write non-speech annotations ("(laughs)"; ``voicelab.whisper_annotations``); off by
    default, as Whisper itself has them (docs/tags.md says why)."""


def temperature_schedule(
    start: float, increment: float, max_fallbacks: int | None = None
) -> tuple[float, ...]:
    """Whisper CLI's rule: ``start``, then +``increment`` up to 1.0 on fallback; ``increment`` 0 = no fallback.
    ``max_fallbacks``: at most this many retries (``None``: up to 1.0, as Whisper)."""
    if increment <= 0:
        return (start,)
    schedule = tuple(float(t) for t in np.arange(start, 1.0 + 1e-6, increment))
    return schedule if max_fallbacks is None else schedule[: 1 + max_fallbacks]


def sample_len_for(duration_s: float) -> int:
    """The most tokens one window of a clip this long may decode (``MAX_TEXT_TOKENS_PER_SECOND``), so a
    model that loops stops there instead of at Whisper's 224-token limit, on every fallback."""
    window = min(duration_s, WHISPER_WINDOW_S)
    return min(WHISPER_SAMPLE_LEN, MIN_SAMPLE_LEN + math.ceil(window * MAX_TEXT_TOKENS_PER_SECOND))


class Transcriber(Protocol):
    batch_size: int
    """How many clips ``transcribe_batch`` is best given at once."""

    def transcribe_batch(self, audios: Sequence[np.ndarray]) -> list[ClipResult]:
        """``audios``: ``(T,)`` float32 at 16 kHz each; one result per clip, in order."""
        ...


class OpenAIWhisperTranscriber:
    """openai-whisper, one clip at a time, arrays in (no ffmpeg subprocess)."""

    batch_size = 1

    def __init__(self, model, device: str, options: DecodeOptions):
        from voicelab.whisper_annotations import openai_suppress_tokens

        self.model = model
        self.options = options
        self.fp16 = device.startswith("cuda")  # fp16 is CUDA-only in whisper; CPU runs fp32
        self.suppress_tokens = openai_suppress_tokens(model, annotations=options.annotations)

    def transcribe_batch(self, audios: Sequence[np.ndarray]) -> list[ClipResult]:
        import whisper

        results = []
        for audio in audios:
            out = whisper.transcribe(
                self.model,
                audio,
                language=self.options.language,
                task="transcribe",
                temperature=self.options.temperatures,
                beam_size=self.options.beam_size,
                best_of=DEFAULT_BEST_OF,
                sample_len=sample_len_for(len(audio) / WHISPER_SAMPLE_RATE),
                fp16=self.fp16,
                # Clips are independent: conditioning on the previous window only spreads hallucinations.
                condition_on_previous_text=False,
                suppress_tokens=self.suppress_tokens,
                verbose=None,
            )
            results.append(summarize_segments(out["segments"]))
        return results


class FasterWhisperTranscriber:
    """faster-whisper's batched pipeline over several clips at once.

    The clips of a batch are laid end to end and handed over with ``clip_timestamps``, one chunk per clip,
    so the encoder and decoder run on the whole batch; each segment's ``seek`` (its chunk's start frame)
    says which clip it belongs to.
    """

    FRAMES_PER_SECOND = 100  # whisper features: 10 ms hop (160 samples at 16 kHz)
    MIN_CLIP_SAMPLES = 2 * WHISPER_SAMPLE_RATE // FRAMES_PER_SECOND  # 2 frames: distinct start frames

    def __init__(self, model, options: DecodeOptions, batch_size: int = DEFAULT_BATCH_SIZE):
        from faster_whisper import BatchedInferencePipeline

        from voicelab.whisper_annotations import faster_suppress_tokens

        self.model = model
        self.pipeline = BatchedInferencePipeline(model)
        self.options = options
        self.batch_size = batch_size
        self.suppress_tokens = faster_suppress_tokens(model, annotations=options.annotations)

    def _decode_kwargs(self, audios: Sequence[np.ndarray]) -> dict:
        longest = max(len(a) for a in audios) / WHISPER_SAMPLE_RATE
        return {
            "language": self.options.language,
            "beam_size": self.options.beam_size,
            "temperature": list(self.options.temperatures),
            "condition_on_previous_text": False,
            "max_new_tokens": sample_len_for(longest),
            "suppress_tokens": list(self.suppress_tokens),
        }

    def transcribe_batch(self, audios: Sequence[np.ndarray]) -> list[ClipResult]:
        results: list[ClipResult | None] = [None] * len(audios)
        batched = []
        for i, audio in enumerate(audios):
            if len(audio) > WHISPER_WINDOW_S * WHISPER_SAMPLE_RATE:
                # A batch chunk is cut at 30 s; a longer clip goes through the sequential long-form decoder.
                segments, _ = self.model.transcribe(audio, **self._decode_kwargs([audio]))
                results[i] = summarize_segments(list(segments))
            else:
                batched.append(i)
        if batched:
            for i, result in zip(batched, self._transcribe_short([audios[i] for i in batched]), strict=True):
                results[i] = result
        return results  # type: ignore[return-value]

    def _transcribe_short(self, audios: Sequence[np.ndarray]) -> list[ClipResult]:
        padded = [
            np.pad(a, (0, max(self.MIN_CLIP_SAMPLES - len(a), 0))).astype(np.float32, copy=False)
            for a in audios
        ]
        starts = np.cumsum([0] + [len(a) for a in padded[:-1]])
        stamps = [
            {"start": int(s) / WHISPER_SAMPLE_RATE, "end": (int(s) + len(a)) / WHISPER_SAMPLE_RATE}
            for s, a in zip(starts, padded, strict=True)
        ]
        # The pipeline turns each start back into samples with int(), then into a frame with int(): mirror it.
        seek_to_clip = {
            int(int(st["start"] * WHISPER_SAMPLE_RATE) / WHISPER_SAMPLE_RATE * self.FRAMES_PER_SECOND): i
            for i, st in enumerate(stamps)
        }
        segments, _ = self.pipeline.transcribe(
            np.concatenate(padded),
            clip_timestamps=stamps,
            vad_filter=False,
            batch_size=self.batch_size,
            **self._decode_kwargs(audios),
        )
        per_clip: list[list] = [[] for _ in audios]
        for seg in segments:
            per_clip[seek_to_clip[seg.seek]].append(seg)
        return [summarize_segments(segs) for segs in per_clip]


def load_transcriber(
    backend: str,
    model: str,
    *,
    device: str,
    options: DecodeOptions,
    compute_type: str = "auto",
    batch_size: int = DEFAULT_BATCH_SIZE,
    threads: int = 0,
    flag: str = "--model",
) -> Transcriber:
    """Load the model once (``voicelab.models.whisper.load_whisper``: ``device`` falls back to the CPU,
    with a warning, when CUDA is absent; ``threads`` caps CPU threads) and wrap it. ``flag``: the
    command's flag for the model (``--whisper-model`` in evaluate), named in load errors."""
    loaded, device = load_whisper(
        backend, model, device=device, compute_type=compute_type, threads=threads, flag=flag
    )
    if backend == "openai-whisper":
        return OpenAIWhisperTranscriber(loaded, device, options)
    return FasterWhisperTranscriber(loaded, options, batch_size)
