"""What a transcribe run is asked to do: each setting declared once, with its command-line flag, default and
help (``voicelab.options``). ``cli/transcribe.py`` builds its parser from these fields and the
``TranscribeSettings`` from the parsed flags, then hands them to ``voicelab.transcribe``. No numpy here
(``--help`` reads this module); the package ``voicelab.transcribe`` does the work.
"""

from __future__ import annotations

from dataclasses import dataclass

from voicelab.dataset import EXCLUDED_FILE, REPORT_FILE
from voicelab.models.whisper import BACKENDS, COMPUTE_TYPES
from voicelab.options import finite_float, non_negative_int, option, positive_int
from voicelab.review import DEFAULT_SPEAKER_THRESHOLD

DEFAULT_BEAM_SIZE = 5  # whisper's CLI default (whisper.transcribe itself decodes greedily)
DEFAULT_BATCH_SIZE = 8  # faster-whisper README's batched benchmark setting
DEFAULT_MAX_FALLBACKS = 2
"""Retries at a higher temperature per window (Whisper's CLI allows 5): each is a whole decode (best of 5
samples), so a clip that makes Whisper loop costs at most 3 decodes instead of 6."""


@dataclass(frozen=True)
class TranscribeSettings:
    """Which Whisper, how it decodes, and what the review measures."""

    model: str = option(
        "--model",
        default="medium",
        help="Whisper model: tiny, base, small, medium, large (or any name Whisper knows, e.g. large-v3, "
        "turbo), or a path to a local checkpoint file (.pt; a CTranslate2 folder for faster-whisper)",
    )
    language: str = option("--language", default="en", help="language code (or English name) of the speech")
    device: str = option("--device", default="cuda", help="torch device; falls back to the CPU without CUDA")
    backend: str = option("--backend", choices=BACKENDS, default=BACKENDS[0], help="Whisper implementation")
    batch_size: int | None = option(  # None: DEFAULT_BATCH_SIZE (given at all only with faster-whisper)
        "--batch-size",
        type=positive_int,
        default=None,
        help=f"clips decoded together (faster-whisper only; default {DEFAULT_BATCH_SIZE})",
    )
    compute_type: str = option(
        "--compute-type",
        choices=COMPUTE_TYPES,
        default="auto",
        help="faster-whisper weights precision; auto = float16 on CUDA, float32 on CPU",
    )
    threads: int = option(
        "--threads", type=int, default=0, help="CPU threads for decoding (0 = the library's default)"
    )
    beam_size: int = option(
        "--beam-size", type=positive_int, default=DEFAULT_BEAM_SIZE, help="beam search width (1 = greedy)"
    )
    temperature: float = option(
        "--temperature", type=finite_float, default=0.0, help="first decoding temperature"
    )
    temperature_increment_on_fallback: float = option(
        "--temperature-increment-on-fallback",
        type=finite_float,
        default=0.2,
        help="raise the temperature by this when a decode looks failed, up to 1.0 (0 = never retry; "
        "faster-whisper batches use the first temperature only)",
    )
    max_fallbacks: int = option(
        "--max-fallbacks",
        type=non_negative_int,
        default=DEFAULT_MAX_FALLBACKS,
        help="at most this many retries at a higher temperature per clip: each is a whole decode, so this "
        "caps the work a clip that makes Whisper loop can cost (Whisper's own limit is 5)",
    )
    speaker_threshold: float = option(
        "--speaker-threshold",
        type=finite_float,
        default=DEFAULT_SPEAKER_THRESHOLD,
        help="flag clips whose speaker similarity to the dataset's voice is under this (cosine, -1..1); "
        f"see the similarity plot in {REPORT_FILE}",
    )
    reference: tuple[str, ...] = option(
        "--reference",
        nargs="+",
        metavar="CLIP",
        default=(),
        help="clips of the character (paths, or clip names in INPUT_DIR): similarity is measured to them "
        "instead of to the voice most clips share",
    )
    exclude_flagged: bool = option(
        "--exclude-flagged",
        action="store_true",
        default=False,
        help=f"list clips flagged as another speaker, noisy or distorted in {EXCLUDED_FILE}, which training "
        "skips (audio and transcript rows stay; delete a line there to put a clip back: a clip a person "
        "restored is never excluded again)",
    )
    no_quality: bool = option(
        "--no-quality",
        action="store_true",
        default=False,
        help="skip the audio measures (speaker embedding, DNSMOS, speech time) and the dataset report",
    )
    tags: bool = option(
        "--tags",
        action="store_true",
        default=False,
        help="let Whisper write its non-speech annotations ((laughs), [sighs]), which it suppresses by "
        "default, and write them as Orpheus tags (<laugh>, <sigh>); unknown ones are removed and reported. "
        "Off by default: its effect on plain transcripts could not be measured without real Whisper weights",
    )
    """Whisper's annotations let through as Orpheus tags (``voicelab.whisper_annotations``)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "reference", tuple(self.reference))  # argparse gives a list
