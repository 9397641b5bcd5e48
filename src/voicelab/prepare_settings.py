"""What a prepare-audio run is asked to do: each setting declared once, with its command-line flag, default
and help (``voicelab.options``). ``cli/prepare_audio.py`` builds its parser from these fields and the
``PrepareSettings`` from the parsed flags; ``voicelab.prepare`` does the work. No numpy here (``--help``
reads this module): the splitter's parameters are built inside ``split_params``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from voicelab import orpheus
from voicelab.dataset import MANIFEST_FILE
from voicelab.options import finite_float, option, positive_float, positive_int

MIN_SAMPLE_RATE = 8000  # telephone audio; below it speech loses the consonants a voice is made of
DEFAULT_THRESHOLD_DB = -40.0
"""The guide's silence threshold (prepare-audio's --silence-threshold default)."""
SPEAKER_THRESHOLD = 0.75
"""Cosine similarity to the character at which a window is theirs (transcribe's speaker flag uses the
same line, ``review.DEFAULT_SPEAKER_THRESHOLD``)."""
MUSIC_BED_DROP, MUSIC_BED_KEEP = "drop", "keep"
SPEAKER_AUTO = "auto"


def not_positive_db(text: str) -> float:
    """argparse ``type=`` for a dBFS level: a finite number <= 0."""
    value = finite_float(text)
    if value > 0:
        raise argparse.ArgumentTypeError(f"dBFS levels are 0 or below (0 = full scale), got {text}")
    return value


@dataclass(frozen=True)
class PrepareSettings:
    """The guide's flags, with its defaults."""

    sample_rate: int = option(  # the rate Orpheus' SNAC codec works at
        "--sample-rate",
        type=positive_int,
        default=orpheus.SAMPLE_RATE,
        help=f"target sample rate in Hz, at least {MIN_SAMPLE_RATE} (Orpheus/SNAC: 24000)",
    )
    min_duration: float = option(
        "--min-duration", type=positive_float, default=3.0, help="minimum clip duration (s)"
    )
    max_duration: float = option(
        "--max-duration", type=positive_float, default=13.0, help="maximum clip duration (s)"
    )
    silence_threshold: float = option(
        "--silence-threshold",
        type=not_positive_db,
        default=DEFAULT_THRESHOLD_DB,
        help="10 ms frames quieter than this (dBFS RMS) are silence",
    )
    """dBFS; 10 ms frames under it are silent."""
    silence_min_len_ms: int = option(
        "--silence-min-len",
        type=positive_int,
        default=500,
        help="a pause is at least this long (ms); clips are cut only inside pauses",
    )
    target_loudness: float = option(
        "--target-loudness",
        type=not_positive_db,
        default=-20.0,
        help="RMS loudness of every clip (dBFS); lowered per clip where needed so that no sample clips",
    )
    """RMS dBFS of every written clip (unless the peak guard lowers it)."""
    reference: tuple[Path, ...] = option(
        "--reference",
        type=Path,
        nargs="+",
        metavar="FILE",
        default=(),
        unset=None,
        help="clean recordings (or clips) of the character, at least 2 s of speech in all: only their "
        "voice becomes clips",
    )
    """Recordings of the character: keep only their voice (``voicelab.speaker_turns``)."""
    speaker: str | None = option(
        "--speaker",
        choices=[SPEAKER_AUTO],
        default=None,
        help="auto: keep the voice that speaks most across the folder (the summary names the others found)",
    )
    """``auto``: keep only the voice that speaks most across the folder."""
    speaker_threshold: float = option(
        "--speaker-threshold",
        type=positive_float,
        default=SPEAKER_THRESHOLD,
        unset=None,  # given without a voice to keep is refused (cli/prepare_audio.check_args)
        help="cosine similarity to the character's voice from which a stretch is theirs (default 0.75)",
    )
    music_bed: str = option(
        "--music-bed",
        choices=[MUSIC_BED_DROP, MUSIC_BED_KEEP],
        default=MUSIC_BED_DROP,
        unset=None,
        help="the character speaking over music: drop it (the default: a voice trained on it learns the "
        "music too), or "
        f"keep it marked music=bed in {MANIFEST_FILE}. Music alone never becomes a clip",
    )
    """With a voice to keep: ``drop`` the character's speech over a music bed, or ``keep`` it marked."""
    separate_vocals: bool = option(
        "--separate-vocals",
        action="store_true",
        default=False,
        help="work on each recording's vocals stem: a music bed under the character is taken out instead of "
        "the speech being dropped (about 2 s of CPU per second of audio; fast on a GPU with --device cuda)",
    )
    """Work on each recording's vocals stem (demucs; ``voicelab.separation``)."""
    demucs_model: str = option(
        "--demucs-model",
        default="htdemucs",
        metavar="NAME",
        help="demucs model (downloaded by demucs on first use, or found in --demucs-repo)",
    )
    demucs_repo: Path | None = option(
        "--demucs-repo",
        type=Path,
        default=None,
        metavar="DIR",
        help="a local folder of demucs models (NAME.yaml and its .th files, as demucs' own --repo): offline",
    )
    """A local folder of demucs models (offline); without it demucs downloads the model on first use."""
    device: str = option("--device", default="cpu", help="torch device for the separation (cpu, cuda)")
    """torch device of the vocal separation (and of the speaker encoder when not ``cpu``)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "reference", tuple(self.reference))  # argparse gives a list

    @property
    def speaker_auto(self) -> bool:
        return self.speaker == SPEAKER_AUTO

    @property
    def selects_voice(self) -> bool:
        return bool(self.reference) or self.speaker_auto

    def split_params(self):
        """The splitter's parameters (``segment.SplitParams``) for these settings."""
        from voicelab import segment

        hop = segment.frame_hop(self.sample_rate)
        return segment.SplitParams.from_seconds(
            threshold_db=self.silence_threshold,
            min_s=self.min_duration,
            max_s=self.max_duration,
            pause_s=self.silence_min_len_ms / 1000,
            frame_s=hop / self.sample_rate,
        )
