"""The audio measures transcribe stores beside Whisper's numbers in the signals file.

Each clip's audio (already in memory at 16 kHz) is measured once (``voicelab.quality``): a speaker
embedding, DNSMOS scores, its seconds of speech, and its longest non-speech sound
(``voicelab.vocal_events``). They are stored in the signals file (``voicelab.dataset.ClipSignals``), so a
rerun measures only clips it has no measures for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voicelab.dataset import CLIP_SUFFIX
from voicelab.errors import UsageError
from voicelab.fileio import resolve_inside
from voicelab.review import DEFAULT_SPEAKER_THRESHOLD
from voicelab.transcribe.backends import WHISPER_SAMPLE_RATE, TranscribeError

EMBEDDING_DECIMALS = 4  # stored voice prints: 4 decimals keep cosine similarities to ~1e-4, ~2 KB a clip
QUALITY_BATCH = 16  # clips measured together when catching up on clips an earlier run did not measure


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
    from voicelab import quality, vocal_events

    embeddings = quality.speaker_embeddings(audios, WHISPER_SAMPLE_RATE, device=quality_device(device))
    out = []
    for audio, emb in zip(audios, embeddings, strict=True):
        sound = vocal_events.longest(vocal_events.sound_events(audio, WHISPER_SAMPLE_RATE))
        fields_: dict = {
            "speech_s": round(quality.speech_seconds(audio, WHISPER_SAMPLE_RATE), 3),
            "embedding": [round(float(x), EMBEDDING_DECIMALS) for x in emb],
            "nonspeech_s": round(sound.sounding_s, 3) if sound else 0.0,
            "nonspeech_at_s": round(sound.start_s, 3) if sound else None,
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
