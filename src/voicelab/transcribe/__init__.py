"""Transcribe a folder of clips with Whisper into transcript.csv, resumably, plus a risk review.

Files written beside the output (``transcript.csv`` by default; names and formats are
``voicelab.dataset.PreparedDataset``'s):

- ``transcript.csv``: ``filename,text``, one row per clip with speech, sorted.
- ``transcript_signals.jsonl``: one JSON record per clip Whisper has seen (its text and numbers), so a
  resumed run neither re-transcribes clips (empty ones included) nor forgets their numbers. A row the
  user deletes from transcript.csv stays deleted; ``--overwrite`` starts over.
- ``transcript_review.csv``: the clips worth a listen, riskiest first (see ``voicelab.review``).
- ``dataset_report.png``: clip lengths, speaker similarity, DNSMOS, minutes per source, the dataset's tier.
- ``excluded.csv`` (with ``--exclude-flagged``): clips flagged as another speaker, noisy or distorted, left
  out of training; their audio and transcript rows stay, so a person can put them back.

The package, by job:

- ``backends``: the Whisper transcribers, openai-whisper (default, one clip at a time) and faster-whisper
  (optional extra, CTranslate2, clips decoded in batches); both read the same options and give the same
  results. Their models load through ``voicelab.models.whisper``.
- ``resume``: what an earlier run left, and what is still to do.
- ``signals``: the audio measures stored beside Whisper's numbers (speaker embedding, DNSMOS, speech time,
  the longest non-speech sound), taken once per clip from the audio already in memory.
- ``review_inputs``: what the review looks at, and the review, exclusions and report written at the end.
- ``run``: ``transcribe_clips``, the whole step; Whisper's texts go through ``dataset.normalize_tags``
  (``--tags``: its non-speech annotations become Orpheus tags, ``voicelab.whisper_annotations``).

The names below are this package's public interface (the command and the tests use them).
"""

from voicelab.models.whisper import BACKENDS, COMPUTE_TYPES, check_model
from voicelab.transcribe.backends import (
    MAX_TEXT_TOKENS_PER_SECOND,
    MIN_SAMPLE_LEN,
    WHISPER_SAMPLE_LEN,
    WHISPER_SAMPLE_RATE,
    WHISPER_WINDOW_S,
    ClipResult,
    DecodeOptions,
    FasterWhisperTranscriber,
    OpenAIWhisperTranscriber,
    TranscribeError,
    Transcriber,
    load_transcriber,
    normalize_language,
    sample_len_for,
    summarize_segments,
    temperature_schedule,
)
from voicelab.transcribe.resume import ResumePlan, clip_duration_s, list_some, plan_resume
from voicelab.transcribe.review_inputs import review_inputs
from voicelab.transcribe.run import TranscribeSummary, transcribe_clips
from voicelab.transcribe.signals import QualityOptions, ReferenceClipError, measure_quality, resolve_reference
from voicelab.transcribe_settings import DEFAULT_BATCH_SIZE, DEFAULT_BEAM_SIZE, DEFAULT_MAX_FALLBACKS

__all__ = [
    "BACKENDS",
    "COMPUTE_TYPES",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_BEAM_SIZE",
    "DEFAULT_MAX_FALLBACKS",
    "MAX_TEXT_TOKENS_PER_SECOND",
    "MIN_SAMPLE_LEN",
    "WHISPER_SAMPLE_LEN",
    "WHISPER_SAMPLE_RATE",
    "WHISPER_WINDOW_S",
    "ClipResult",
    "DecodeOptions",
    "FasterWhisperTranscriber",
    "OpenAIWhisperTranscriber",
    "QualityOptions",
    "ReferenceClipError",
    "ResumePlan",
    "TranscribeError",
    "TranscribeSummary",
    "Transcriber",
    "check_model",
    "clip_duration_s",
    "list_some",
    "load_transcriber",
    "measure_quality",
    "normalize_language",
    "plan_resume",
    "resolve_reference",
    "review_inputs",
    "sample_len_for",
    "summarize_segments",
    "temperature_schedule",
    "transcribe_clips",
]
