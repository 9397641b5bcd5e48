"""The audio measures transcribe stores beside Whisper's numbers in the signals file.

Each clip's audio (already in memory at 16 kHz) is measured once (``voicelab.quality``): a speaker
embedding, DNSMOS scores, its seconds of speech, and its longest non-speech sound
(``voicelab.vocal_events``). They are stored in the signals file (``voicelab.dataset.ClipSignals``), so a
rerun measures only clips it has no measures for.

The measures run on worker threads (``Measurer``) while Whisper transcribes the same clips: the speaker
encoder (numpy) and the ONNX models (DNSMOS, Silero VAD) release the GIL, so on a machine with a core
Whisper does not use they cost no wall time (docs/benchmarks.md). The numbers are those of
``measure_quality`` on one clip at a time.
"""

from __future__ import annotations

import functools
import itertools
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
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


def measure_workers(device: str) -> int:
    """Worker threads for the audio measures. With Whisper on a GPU (``device`` CUDA) the CPU is free:
    one per core but the one Whisper's loop runs on. With Whisper on the CPU, one: Whisper needs the other
    cores (``--threads`` tells it how many it may take; on 2 cores, 1 leaves the measures a core of their
    own). Each worker measures on one core (``quality.ENCODER_THREADS``, ``models.quality.DNSMOS_THREADS``).
    """
    if device.startswith("cuda"):
        return max(1, len(os.sched_getaffinity(0)) - 1)
    return 1


class PendingMeasures:
    """The audio measures of one batch of clips, being taken on the workers."""

    def __init__(self, futures: list[Future]):
        self._futures = futures

    def result(self) -> list[dict]:
        """Each clip's measures (``ClipSignals`` fields by name), in order; waits for them."""
        return [fields_ for future in self._futures for fields_ in future.result()]


class Measurer:
    """Takes the audio measures of clips on worker threads, beside the caller's Whisper.

    ``submit(audios)`` returns at once; the clips are shared among the workers in contiguous parts, each
    part's speaker embeddings taken in one batch. ``busy_s``: seconds the workers spent measuring.
    ``device``: Whisper's and the speaker encoder's (``--device``); asked on first use, since checking
    for CUDA imports torch.
    """

    def __init__(self, device: str = "cpu", workers: int | None = None):
        self.requested_device = device
        self._workers = workers
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self.busy_s = 0.0

    @functools.cached_property
    def device(self) -> str:
        return quality_device(self.requested_device)

    @functools.cached_property
    def workers(self) -> int:
        return self._workers or measure_workers(self.device)

    def submit(self, audios: Sequence[np.ndarray]) -> PendingMeasures:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="audio-measures")
        parts = min(self.workers, len(audios))
        bounds = [round(k * len(audios) / parts) for k in range(parts + 1)] if parts else [0]
        return PendingMeasures(
            [self._pool.submit(self._measure, audios[a:b]) for a, b in itertools.pairwise(bounds)]
        )

    def _measure(self, audios: Sequence[np.ndarray]) -> list[dict]:
        began = time.perf_counter()
        try:
            return measure_quality(audios, self.device)
        finally:
            with self._lock:
                self.busy_s += time.perf_counter() - began

    def close(self) -> None:
        """Wait for the measures under way; drop those not started (a Ctrl-C)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Measurer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
