"""Transcribe a folder of clips with Whisper into transcript.csv, resumably, plus a risk review.

Files written beside the output (``transcript.csv`` by default):

- ``transcript.csv``: ``filename,text``, one row per clip with speech, sorted (see ``voicelab.dataset``).
- ``transcript_signals.jsonl``: one JSON record per clip Whisper has seen (its text and numbers), so a
  resumed run neither re-transcribes clips (empty ones included) nor forgets their numbers. A row the
  user deletes from transcript.csv stays deleted; ``--overwrite`` starts over.
- ``transcript_review.csv``: the clips worth a listen, riskiest first (see ``voicelab.review``).
- ``dataset_report.png``: clip lengths, speaker similarity, DNSMOS, minutes per source, the dataset's tier.
- ``excluded.csv`` (with ``--exclude-flagged``): clips flagged as another speaker, noisy or distorted, left
  out of training; their audio and transcript rows stay, so a person can put them back.

Beside Whisper, each clip's audio (already in memory at 16 kHz) is measured once (``voicelab.quality``):
a speaker embedding, DNSMOS scores and its seconds of speech. They are stored in the signals file, so a
rerun measures only clips it has no measures for.

Two backends read the same options and write the same files: openai-whisper (default, one clip at a
time) and faster-whisper (optional extra, CTranslate2, clips decoded in batches).
"""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
import time
import urllib.error
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from voicelab.audio import AudioError, read_audio
from voicelab.dataset import (
    CLIP_SUFFIX,
    TranscriptAppender,
    normalize_text,
    read_exclusions,
    read_transcript_for_resume,
    restored_clips,
    review_path_for,
    signals_path_for,
    write_exclusions,
    write_transcript,
)
from voicelab.errors import UsageError
from voicelab.fileio import DurableAppender, atomic_output, resolve_inside
from voicelab.review import DEFAULT_SPEAKER_THRESHOLD, ClipSignals, review, speaker_context, write_review

logger = logging.getLogger(__name__)

WHISPER_SAMPLE_RATE = 16_000  # whisper.audio.SAMPLE_RATE: both backends take 16 kHz float32 mono arrays
WHISPER_WINDOW_S = 30.0  # whisper.audio.CHUNK_LENGTH: one decoder pass sees at most this much audio
REPORT_NAME = "dataset_report.png"
EMBEDDING_DECIMALS = 4  # stored voice prints: 4 decimals keep cosine similarities to ~1e-4, ~2 KB a clip
QUALITY_BATCH = 16  # clips measured together when catching up on clips an earlier run did not measure
BACKENDS = ("openai-whisper", "faster-whisper")
COMPUTE_TYPES = ("auto", "float32", "float16", "int8", "int8_float16")
DEFAULT_BEAM_SIZE = 5  # whisper's CLI default (whisper.transcribe itself decodes greedily)
DEFAULT_BEST_OF = 5  # whisper's CLI default: candidates sampled at each fallback temperature
DEFAULT_BATCH_SIZE = 8  # faster-whisper README's batched benchmark setting
DEFAULT_MAX_FALLBACKS = 2
"""Retries at a higher temperature per window (Whisper's CLI allows 5): each is a whole decode (best of 5
samples), so a clip that makes Whisper loop costs at most 3 decodes instead of 6."""
MAX_TEXT_TOKENS_PER_SECOND = 10
"""Fast speech is 4-5 words a second and a word ~1.3 Whisper tokens, plus a few timestamp tokens per
segment: a decode longer than this for its audio is looping, not transcribing."""
MIN_SAMPLE_LEN = 32
"""Tokens any window may take, however short its audio (timestamps, a short phrase)."""
WHISPER_SAMPLE_LEN = 224
"""Whisper's own limit per window: half of its 448-token text context."""
FASTER_WHISPER_MISSING = (
    "--backend faster-whisper needs the optional extra: pip install -e '.[faster-whisper]'"
)


class TranscribeError(UsageError):
    """A problem that stops the whole run (unknown model or language, model that cannot load, backend not
    installed); the message names the input and what to do."""


# ---------------------------------------------------------------------------------------------- paths


def clip_duration_s(path: Path) -> float | None:
    """Seconds of audio from the file header (no decode), ``None`` if unreadable."""
    import soundfile as sf

    try:
        return float(sf.info(path).duration)
    except (sf.LibsndfileError, RuntimeError, OSError):
        return None


# -------------------------------------------------------------------------------------- model choice


def resolve_device(requested: str, cuda_available: bool) -> str:
    """``requested`` unless it asks for CUDA on a machine without it: then one warning and ``"cpu"``."""
    if requested.startswith("cuda") and not cuda_available:
        logger.warning(
            "--device %s: CUDA is not available here, using the CPU (fp32, much slower)", requested
        )
        return "cpu"
    return requested


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


def openai_model_names() -> list[str]:
    import whisper

    names = list(whisper.available_models())
    return names if "large" in names else [*names, "large"]


def _unknown_model(name: str, names: Sequence[str], local_kind: str) -> TranscribeError:
    return TranscribeError(
        f"unknown Whisper model {name!r}: use one of {', '.join(names)}, or a path to a {local_kind}"
    )


def check_model(backend: str, name: str) -> None:
    """Raise ``TranscribeError`` (listing valid names) unless ``name`` can name a model for ``backend``.

    Cheap (no loading, no network): run before anything else so a typo fails at once, even on a resume
    that has nothing left to transcribe.
    """
    path = Path(name).expanduser()
    if backend == "openai-whisper":
        if name in openai_model_names() or path.is_file():
            return
        if path.is_dir():
            raise TranscribeError(
                f"{path}: is a folder; openai-whisper needs a checkpoint file (.pt). "
                "A CTranslate2 model folder works with --backend faster-whisper"
            )
        raise _unknown_model(name, openai_model_names(), "local checkpoint file")
    try:
        from faster_whisper import available_models
    except ImportError as e:
        raise TranscribeError(FASTER_WHISPER_MISSING) from e
    if path.is_dir() or name in available_models() or ("/" in name and not path.exists()):
        return
    raise _unknown_model(name, available_models(), "local CTranslate2 model folder")


def load_openai_whisper(name: str, device: str, flag: str = "--model"):
    """``whisper.load_model`` on a model name (downloaded on first use) or a local checkpoint file.
    ``flag``: the command's flag for the model, named in the offline hint."""
    import whisper

    names = openai_model_names()
    if name in names:
        try:
            return whisper.load_model(name, device=device)
        except (urllib.error.URLError, OSError) as e:
            cache = Path(os.getenv("XDG_CACHE_HOME", Path.home() / ".cache")) / "whisper"
            raise TranscribeError(
                f"Whisper model {name!r} is not in the cache ({cache}) and cannot be downloaded ({e}). "
                f"On a machine with network run this once to cache it, or copy the checkpoint file "
                f"(e.g. {Path(whisper._MODELS[name]).name}) here and pass {flag} "
                f"/path/to/{Path(whisper._MODELS[name]).name}"
            ) from e
    check_model("openai-whisper", name)
    path = Path(name).expanduser()
    try:
        return whisper.load_model(str(path), device=device)
    except (RuntimeError, KeyError, TypeError, EOFError, OSError, pickle.UnpicklingError) as e:
        raise TranscribeError(f"{path}: not a loadable Whisper checkpoint ({e})") from e


def load_faster_whisper(name: str, device: str, compute_type: str, threads: int = 0, flag: str = "--model"):
    """faster-whisper ``WhisperModel`` from a size name, a Hugging Face repo id or a local CTranslate2 folder."""
    try:
        from faster_whisper import WhisperModel
    except ImportError as e:
        raise TranscribeError(FASTER_WHISPER_MISSING) from e
    check_model("faster-whisper", name)
    path = Path(name).expanduser()
    source = str(path) if path.is_dir() else name
    if compute_type == "auto":
        compute_type = "float16" if device.startswith("cuda") else "float32"
    device_name, _, index = device.partition(":")
    try:
        return WhisperModel(
            source,
            device=device_name,
            device_index=int(index or 0),
            compute_type=compute_type,
            cpu_threads=threads,
        )
    except OSError as e:  # huggingface_hub's offline and HTTP errors are OSErrors
        raise TranscribeError(
            f"faster-whisper model {name!r} is not in the Hugging Face cache (~/.cache/huggingface/hub) and "
            f"cannot be downloaded ({e}). Download it on a machine with network, or pass {flag} "
            "/path/to/ctranslate2-model-folder"
        ) from e
    except (RuntimeError, ValueError) as e:
        raise TranscribeError(
            f"faster-whisper cannot load {name!r} on {device} as {compute_type} ({e})"
        ) from e


# -------------------------------------------------------------------------------------------- backends


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
        self.model = model
        self.options = options
        self.fp16 = device.startswith("cuda")  # fp16 is CUDA-only in whisper; CPU runs fp32

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

        self.model = model
        self.pipeline = BatchedInferencePipeline(model)
        self.options = options
        self.batch_size = batch_size

    def _decode_kwargs(self, audios: Sequence[np.ndarray]) -> dict:
        longest = max(len(a) for a in audios) / WHISPER_SAMPLE_RATE
        return {
            "language": self.options.language,
            "beam_size": self.options.beam_size,
            "temperature": list(self.options.temperatures),
            "condition_on_previous_text": False,
            "max_new_tokens": sample_len_for(longest),
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
    """Load the model once and wrap it; ``device`` falls back to CPU (with a warning) when CUDA is absent.
    ``flag``: the command's flag for the model (``--whisper-model`` in evaluate), named in load errors.

    ``threads`` > 0 caps CPU threads (torch's, process-wide, for openai-whisper; CTranslate2's for
    faster-whisper): more threads than free cores makes CPU decoding many times slower, not faster.
    """
    if backend == "openai-whisper":
        import torch

        if threads > 0:
            torch.set_num_threads(threads)
        device = resolve_device(device, torch.cuda.is_available())
        return OpenAIWhisperTranscriber(load_openai_whisper(model, device, flag), device, options)
    if backend == "faster-whisper":
        try:
            import ctranslate2
        except ImportError as e:
            raise TranscribeError(FASTER_WHISPER_MISSING) from e
        device = resolve_device(device, ctranslate2.get_cuda_device_count() > 0)
        return FasterWhisperTranscriber(
            load_faster_whisper(model, device, compute_type, threads, flag), options, batch_size
        )
    raise ValueError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")


# ------------------------------------------------------------------------------------- resume + signals


def read_signals(path: Path) -> dict[str, ClipSignals]:
    """Records of the signals file by filename (last wins); a line cut short by a crash is skipped."""
    found: dict[str, ClipSignals] = {}
    if not path.exists():
        return found
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = ClipSignals(**json.loads(line))
            except (json.JSONDecodeError, TypeError) as e:
                logger.warning("%s: line %d unreadable (%s); ignored", path, line_no, e)
                continue
            found[rec.filename] = rec
    return found


def write_signals(path: Path, signals: dict[str, ClipSignals]) -> None:
    with atomic_output(path) as tmp, tmp.open("w", encoding="utf-8") as f:
        for name in sorted(signals):
            f.write(json.dumps(asdict(signals[name]), ensure_ascii=False) + "\n")


class _SignalsAppender(DurableAppender):
    def append(self, rec: ClipSignals) -> None:
        self.write(json.dumps(asdict(rec), ensure_ascii=False) + "\n")


CHANGED_CLIP_TOLERANCE_S = 0.01
"""A clip whose length differs from the one Whisper saw by more than this (one 10 ms frame; resampling to
16 kHz moves it by under a sample) is a new clip under an old name, e.g. after prepare-audio --overwrite."""
NAMES_SHOWN = 5  # how many clip names a warning lists before "..."


@dataclass
class ResumePlan:
    rows: dict[str, str]  # kept transcript rows, filename -> text
    signals: dict[str, ClipSignals]  # kept Whisper records
    todo: list[Path]  # clips still to transcribe, sorted
    missing: list[str] = field(default_factory=list)
    """Kept rows whose clip is not in the folder (deleted or renamed): training skips them."""
    changed: list[str] = field(default_factory=list)
    """Clips whose audio changed since they were transcribed: their old rows are dropped and redone."""


def list_some(names: Sequence[str]) -> str:
    """The first ``NAMES_SHOWN`` names, comma-separated, and how many there are in all when more."""
    shown = ", ".join(names[:NAMES_SHOWN])
    return shown + (f", ... ({len(names)} in all)" if len(names) > NAMES_SHOWN else "")


def plan_resume(clips: Sequence[Path], output: Path, *, overwrite: bool) -> ResumePlan:
    """What an earlier run left: its rows are kept and their clips skipped, unless ``overwrite``.

    A clip whose length no longer matches what Whisper saw was replaced (same name, new audio): it is
    transcribed again and its old row dropped, with a warning. Rows naming clips that are gone are kept
    (a hand-corrected row is never deleted behind the user's back) and reported.

    Raises ``TranscriptFormatError`` when ``output`` exists but is not a ``filename,text`` CSV, so a
    wrong file is never overwritten by accident.
    """
    if overwrite:
        return ResumePlan({}, {}, list(clips))
    rows = dict(read_transcript_for_resume(output)) if output.exists() else {}
    signals = read_signals(signals_path_for(output))
    present = {c.stem for c in clips}
    changed = []
    for clip in clips:
        rec = signals.get(clip.stem)
        if rec is None or rec.duration_s is None:
            continue
        now = clip_duration_s(clip)
        if now is not None and abs(now - rec.duration_s) > CHANGED_CLIP_TOLERANCE_S:
            changed.append(clip.stem)
            del signals[clip.stem]
            rows.pop(clip.stem, None)
    if changed:
        logger.warning(
            "%d clip(s) changed since %s was written (new audio under the same name): transcribing them "
            "again, their old rows are replaced: %s",
            len(changed),
            output,
            list_some(changed),
        )
    missing = sorted(set(rows) - present)
    if missing:
        logger.warning(
            "%s: %d row(s) name clips that are not in %s (kept; training skips them; delete the rows "
            "or restore the clips): %s",
            output,
            len(missing),
            clips[0].parent if clips else output.parent,
            list_some(missing),
        )
    done = set(rows) | set(signals)
    return ResumePlan(rows, signals, [c for c in clips if c.stem not in done], missing, changed)


# ------------------------------------------------------------------------------------------- quality


class ReferenceClipError(TranscribeError):
    pass


@dataclass(frozen=True)
class QualityOptions:
    """The audio measures beside Whisper, and what the review does with them."""

    device: str = "cpu"
    reference: tuple[Path, ...] = ()
    """Clips of the character: speaker similarity is measured to them instead of the dominant voice."""
    speaker_threshold: float = DEFAULT_SPEAKER_THRESHOLD
    exclude_flagged: bool = False
    """Write clips flagged as another speaker, noisy or distorted into excluded.csv."""
    report: bool = True


def resolve_reference(names: Sequence[str | Path], input_dir: Path) -> tuple[Path, ...]:
    """Reference clips as given (a path), else by name inside ``input_dir`` (``clip_007`` or ``clip_007.wav``)."""
    found = []
    for name in names:
        path = Path(name).expanduser()
        if not path.is_file():
            try:
                path = resolve_inside(input_dir, str(name).removesuffix(CLIP_SUFFIX) + CLIP_SUFFIX)
            except UsageError as e:
                raise ReferenceClipError(f"--reference {name}: {e}") from e
        if not path.is_file():
            raise ReferenceClipError(
                f"--reference {name}: no such file, and no clip {path.name} in {input_dir}; "
                "pass a path to an audio file of the character or a clip name from the folder"
            )
        found.append(path)
    return tuple(found)


def quality_device(requested: str) -> str:
    """``requested`` unless it is CUDA on a machine without it (transcribe already warned): the CPU."""
    if requested.startswith("cuda"):
        import torch

        return requested if torch.cuda.is_available() else "cpu"
    return requested


def measure_quality(audios: Sequence[np.ndarray], device: str = "cpu") -> list[dict]:
    """The stored audio measures of each 16 kHz clip: ``ClipSignals`` fields by name."""
    from voicelab import quality

    embeddings = quality.speaker_embeddings(audios, WHISPER_SAMPLE_RATE, device=quality_device(device))
    out = []
    for audio, emb in zip(audios, embeddings, strict=True):
        fields_: dict = {
            "speech_s": round(quality.speech_seconds(audio, WHISPER_SAMPLE_RATE), 3),
            "embedding": [round(float(x), EMBEDDING_DECIMALS) for x in emb],
        }
        if np.any(audio):  # DNSMOS has nothing to score in digital silence
            score = quality.dnsmos(audio, WHISPER_SAMPLE_RATE)
            fields_.update(
                dnsmos_sig=round(score.sig, 3),
                dnsmos_bak=round(score.bak, 3),
                dnsmos_ovrl=round(score.ovrl, 3),
            )
        out.append(fields_)
    return out


def _catch_up_quality(
    clips: Sequence[Path],
    rows: dict[str, str],
    signals: dict[str, ClipSignals],
    appender: _SignalsAppender,
    read: Callable[[Path], np.ndarray],
    options: QualityOptions,
    summary: TranscribeSummary,
) -> None:
    """Measure the clips done earlier without audio measures (an older run), never Whisper again."""
    stale = [
        c
        for c in clips
        if (c.stem in signals and not signals[c.stem].has_quality)
        or (c.stem in rows and c.stem not in signals)
    ]
    if stale:
        logger.info("measuring %d clip(s) transcribed by an earlier run without audio measures", len(stale))
    for start in range(0, len(stale), QUALITY_BATCH):
        ok, audios = _read_clips(stale[start : start + QUALITY_BATCH], read, summary.failed)
        if not audios:
            continue
        began = time.perf_counter()
        measures = measure_quality(audios, options.device)
        summary.quality_s += time.perf_counter() - began
        summary.measured += len(audios)
        for clip, audio, m in zip(ok, audios, measures, strict=True):
            old = signals.get(clip.stem)
            duration = round(len(audio) / WHISPER_SAMPLE_RATE, 3)
            rec = replace(old, **m) if old else ClipSignals(clip.stem, rows.get(clip.stem, ""), duration, **m)
            appender.append(rec)
            signals[clip.stem] = rec


# ------------------------------------------------------------------------------------------------- run


@dataclass
class TranscribeSummary:
    output: Path
    review_path: Path
    clips: int = 0  # clips in the folder
    kept: int = 0  # clips done by an earlier run
    transcribed: int = 0  # rows written this run
    empty: int = 0  # clips Whisper found no text in this run (no row)
    failed: list[str] = field(default_factory=list)  # "name: reason" of unreadable clips
    audio_s: float = 0.0  # audio transcribed this run
    flagged: int = 0  # clips listed in the review
    rows: int = 0  # rows in the output now
    missing: list[str] = field(default_factory=list)  # rows kept whose clip is gone (ResumePlan.missing)
    changed: list[str] = field(default_factory=list)  # clips redone because their audio changed
    measured: int = 0  # clips given audio measures this run (speaker embedding, DNSMOS, speech time)
    quality_s: float = 0.0  # seconds spent on those measures
    other_speaker: int = 0  # clips flagged as another speaker
    noisy: int = 0  # clips flagged for background noise/music or distorted speech
    excluded_new: int = 0  # clips added to excluded.csv this run
    kept_restored: int = 0  # flagged clips left in, since a person restored them earlier
    excluded_path: Path | None = None
    report_path: Path | None = None

    @property
    def rowless(self) -> int:
        """Clips done by an earlier run that have no row now (the user deleted it, or no speech found)."""
        return self.kept - (self.rows - self.transcribed - len(self.missing))


def transcribe_clips(
    clips: Sequence[Path],
    output: Path,
    transcriber: Transcriber | None,
    plan: ResumePlan,
    *,
    progress: bool = True,
    read: Callable[[Path], np.ndarray] | None = None,
    quality: QualityOptions | None = None,
) -> TranscribeSummary:
    """Transcribe ``plan.todo`` into ``output``, durable row by row, then sort it and write the review.

    With ``quality``, each clip's audio measures are taken beside Whisper (and for clips an earlier run
    left unmeasured), the review weighs them, and the dataset report (and excluded.csv) are written.
    ``output`` is first rewritten (atomically) with the kept rows, then each new row is appended with
    flush + fsync, so the file is a valid CSV at every moment. At the end (and on Ctrl-C or an error)
    it is rewritten sorted, atomically.
    """
    if plan.todo and transcriber is None:
        raise ValueError("clips to transcribe but no transcriber given")
    read = read or (lambda p: read_audio(p, WHISPER_SAMPLE_RATE)[0])
    summary = TranscribeSummary(output=output, review_path=review_path_for(output), clips=len(clips))
    summary.kept = len(clips) - len(plan.todo)
    summary.missing, summary.changed = list(plan.missing), list(plan.changed)
    rows, signals = dict(plan.rows), dict(plan.signals)
    signals_path = signals_path_for(output)
    write_transcript(output, rows.items())
    write_signals(signals_path, signals)

    durations = {c: clip_duration_s(c) or 0.0 for c in plan.todo}
    bar = _progress(plan.todo, durations, progress)
    rows_out = TranscriptAppender(output)
    signals_out = _SignalsAppender(signals_path)
    try:
        step = transcriber.batch_size if transcriber is not None else 1
        for start in range(0, len(plan.todo), step):
            batch = plan.todo[start : start + step]
            ok, audios = _read_clips(batch, read, summary.failed)
            results = transcriber.transcribe_batch(audios) if audios else []  # type: ignore[union-attr]
            measures = _measure(audios, quality, summary)
            for clip, audio, result, m in zip(ok, audios, results, measures, strict=True):
                duration = len(audio) / WHISPER_SAMPLE_RATE
                logger.debug("%s (%.1f s): %r", clip.name, duration, result.text)
                if result.text:
                    rows_out.append(clip.stem, result.text)  # the row first: it is what matters
                    rows[clip.stem] = result.text
                    summary.transcribed += 1
                else:
                    logger.info("%s: no speech recognised; no row written", clip.name)
                    summary.empty += 1
                record = ClipSignals(clip.stem, result.text, round(duration, 3), *_numbers(result), **m)
                signals_out.append(record)
                signals[clip.stem] = record
                summary.audio_s += duration
            bar.update(sum(durations[c] for c in batch) / 60)
            bar.set_postfix_str(f"clips {start + len(batch)}/{len(plan.todo)}", refresh=False)
        if quality is not None:
            _catch_up_quality(clips, rows, signals, signals_out, read, quality, summary)
    finally:
        bar.close()
        rows_out.close()
        signals_out.close()
        try:
            write_transcript(output, rows.items())
            write_signals(signals_path, signals)
        except OSError as e:  # the appended file is already valid; sorting is a nicety
            logger.warning("%s left in transcription order, not sorted: %s", output, e)

    _review(clips, rows, signals, read, quality, summary)
    return summary


def _progress(todo: Sequence[Path], durations: dict[Path, float], enabled: bool):
    """A bar on a terminal; in a log (``make transcribe > log``), a line every 5% of the clips."""
    from voicelab.progress import progress_bar

    return progress_bar(
        len(todo),
        desc="transcribing clips",
        enabled=enabled,
        amount=(sum(durations.values()) / 60, "min of audio"),
        unit="min",
        bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} min [{elapsed}<{remaining}]{postfix}",
    )


def _measure(
    audios: Sequence[np.ndarray], quality: QualityOptions | None, summary: TranscribeSummary
) -> list[dict]:
    """The audio measures of a batch (``{}`` each without ``quality``), timed into ``summary``."""
    if quality is None or not audios:
        return [{} for _ in audios]
    began = time.perf_counter()
    measures = measure_quality(audios, quality.device)
    summary.quality_s += time.perf_counter() - began
    summary.measured += len(audios)
    return measures


def _review(clips, rows, signals, read, quality: QualityOptions | None, summary: TranscribeSummary) -> None:
    """The review CSV, and with ``quality`` excluded.csv and the dataset report."""
    summary.rows = len(rows)
    inputs = review_inputs(rows, signals, clips)
    reference = None
    if quality is not None and quality.reference:
        from voicelab.quality import speaker_embeddings

        reference = speaker_embeddings(
            [read(p) for p in quality.reference], WHISPER_SAMPLE_RATE, device=quality_device(quality.device)
        )
    threshold = quality.speaker_threshold if quality is not None else DEFAULT_SPEAKER_THRESHOLD
    speakers = speaker_context(inputs, reference=reference, threshold=threshold)
    items = review(inputs, speakers)
    write_review(summary.review_path, items)
    summary.flagged = len(items)
    summary.other_speaker = sum(any(r.startswith("other speaker") for r in i.quality_reasons) for i in items)
    summary.noisy = sum(any(not r.startswith("other speaker") for r in i.quality_reasons) for i in items)
    if quality is not None:
        _finish_quality(summary.output.parent, items, inputs, speakers, quality, summary)


def _finish_quality(dataset_dir, items, inputs, speakers, quality: QualityOptions, summary) -> None:
    """excluded.csv (new flags added; a person's entries kept) and the dataset report."""
    excluded = read_exclusions(dataset_dir)
    if quality.exclude_flagged:
        restored = restored_clips(dataset_dir)  # a person's restore outlives the flag
        new = {i.signals.filename: "; ".join(i.quality_reasons) for i in items if i.quality_reasons}
        summary.kept_restored = sum(k in restored for k in new)
        new = {k: v for k, v in new.items() if k not in excluded and k not in restored}
        if new:
            excluded.update(new)
            summary.excluded_path = write_exclusions(dataset_dir, excluded)
        summary.excluded_new = len(new)
    if quality.report:
        from voicelab.dataset_report import write_dataset_report

        try:
            summary.report_path = write_dataset_report(
                dataset_dir / REPORT_NAME, inputs, speakers, excluded=excluded
            )
        except (OSError, ValueError) as e:  # the report is a view; the transcript and review stand
            logger.warning("%s not written: %s", dataset_dir / REPORT_NAME, e)


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


def review_inputs(
    rows: dict[str, str], signals: dict[str, ClipSignals], clips: Sequence[Path]
) -> list[ClipSignals]:
    """What the review looks at: every transcript row, plus clips present whose transcript came out empty.

    Whisper's numbers are used only while the row still has Whisper's text; a row the user corrected is
    judged on its text, duration and audio measures.
    """
    by_stem = {c.stem: c for c in clips}
    out = []
    for name, text in rows.items():
        rec = signals.get(name)
        if rec is not None and rec.text == text:
            out.append(rec)
            continue
        if rec is not None and rec.duration_s is not None:  # the audio measures still hold; Whisper's do not
            out.append(replace(rec, text=text, avg_logprob=None, no_speech_prob=None, compression_ratio=None))
            continue
        duration = clip_duration_s(by_stem[name]) if name in by_stem else None
        out.append(ClipSignals(name, text, duration))
    out.extend(rec for name, rec in signals.items() if not rec.text and name in by_stem and name not in rows)
    return out
