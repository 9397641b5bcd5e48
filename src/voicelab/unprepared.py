"""Does a folder of WAVs hold prepare-audio's clips, or raw recordings? Asked before transcribe writes.

prepare-audio leaves ``manifest.csv`` beside its clips: 16-bit mono WAVs at 24 kHz, 3-13 s, directly in
the folder. A folder without it may still be a dataset made elsewhere (any sample rate: training
resamples); it is taken for raw recordings only when its files say so: several channels, recordings
longer than Whisper's 30-second window, or audio that transcribe would ignore (in sub-folders, or not
WAV). Only file headers are read.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Sequence
from pathlib import Path

from voicelab.audio import AUDIO_SUFFIXES
from voicelab.dataset import CLIP_SUFFIX, DatasetError, PreparedDataset

logger = logging.getLogger(__name__)

LONGEST_CLIP_S = 30.0
"""Whisper hears 30 s at a time; a training clip is 3-13 s. A longer file is a recording, not a clip."""
SHOWN_NAMES = 3


class RawRecordingsError(DatasetError):
    """transcribe was pointed at raw recordings; the message says to run prepare-audio first."""


def raw_recording_signs(folder: Path, clips: Sequence[Path]) -> list[str]:
    """What makes ``folder`` (whose WAVs are ``clips``) look like raw recordings; [] when it does not."""
    import soundfile as sf

    folder = Path(folder)
    if PreparedDataset(folder).manifest_path.exists():
        return []
    rates, multichannel, long = set(), [], []
    for clip in clips:
        try:
            info = sf.info(str(clip))
        except (RuntimeError, OSError):  # unreadable: transcribe reports it per clip
            continue
        rates.add(info.samplerate)
        if info.channels > 1:
            multichannel.append(clip)
        if info.duration > LONGEST_CLIP_S:
            long.append(info.duration)
    n = len(clips)
    signs = []
    if multichannel:
        seen = ", ".join(f"{r / 1000:g} kHz" for r in sorted(rates))
        signs.append(f"{len(multichannel)} of {n} WAVs are not mono ({seen})")
    if long:
        signs.append(f"{len(long)} last over {LONGEST_CLIP_S:g} s (the longest {max(long) / 60:.1f} min)")
    signs += _ignored_audio(folder)
    return signs


def _ignored_audio(folder: Path) -> list[str]:
    """Audio transcribe would not see: files in sub-folders, and recordings in other formats."""
    nested = [p for p in folder.rglob("*") if p.parent != folder and _is_audio(p)]
    other = [p for p in folder.iterdir() if _is_audio(p) and p.suffix.lower() != CLIP_SUFFIX]
    signs = []
    if nested:
        folders = sorted({p.relative_to(folder).parts[0] for p in nested})
        signs.append(
            f"{_count(nested, 'audio file')} in sub-folders ({_names(folders)}) that transcribe ignores"
        )
    if other:
        signs.append(
            f"{_count(other, 'non-WAV recording')} ({_names([p.name for p in other])}) that it ignores"
        )
    return signs


def _is_audio(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in AUDIO_SUFFIXES and not path.name.startswith(".")


def _count(items: Sequence, noun: str) -> str:
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"


def _names(names: Sequence[str]) -> str:
    return ", ".join(names[:SHOWN_NAMES]) + (", ..." if len(names) > SHOWN_NAMES else "")


def refuse_raw_recordings(folder: Path, clips: Sequence[Path], suggested_output: Path) -> None:
    """Raise ``RawRecordingsError`` when ``folder`` looks like raw recordings (see the module docstring)."""
    signs = raw_recording_signs(folder, clips)
    if signs:
        raise RawRecordingsError(
            f"{folder} looks like raw recordings, not prepare-audio's clips "
            f"(no {PreparedDataset(folder).manifest_path.name}; "
            f"{'; '.join(signs)}): run prepare-audio first, "
            f'make prepare-audio ARGS="{shlex.quote(f"{folder}/")} {suggested_output}/", then transcribe '
            f"{suggested_output}/ (or pass --not-prepared to transcribe these files as they are)"
        )
