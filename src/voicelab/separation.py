"""The character's voice out of a music bed: prepare-audio ``--separate-vocals`` (demucs' vocals stem).

After prepare-audio's first pass has decoded a recording into its scratch file (mono, float32, at the
clip rate), ``separate_vocals`` writes the recording's vocals stem into a second scratch file, chunk by
chunk, and everything after (where speech is, whose voice it is, is music playing, the clips) reads the
vocals instead of the mix. The whole recording is separated, as the reference dataset pipelines do
(Emilia-Pipe separates before anything else): speech alone passes through nearly unchanged, and the
speaker encoder then judges the voice without the bed under it.

Memory stays flat: ``CHUNK_S`` of audio at a time, with ``CONTEXT_S`` read on either side so the model
hears what surrounds each chunk; only the chunk's own samples are kept. demucs works on 44.1 kHz stereo:
a chunk is resampled to the model's rate and given as two equal channels, and its vocals come back
averaged to mono at the clip rate. The recording is normalised as demucs' own command does (its mean
and standard deviation) before the model and restored after. ``shifts=0`` (demucs' command averages one
random time shift): the same audio always gives the same clips.

Cost: the full ``htdemucs`` takes about 2 s of CPU per second of audio on one core here (docs/benchmarks.md);
on a GPU (``--device cuda``) a small fraction of that.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from voicelab.models.separation import VOCALS

logger = logging.getLogger(__name__)

CHUNK_S = 30.0
"""Seconds of the recording separated at once (~12 MB of model input and ~45 MB of stems)."""
CONTEXT_S = 2.0
"""Seconds read either side of a chunk and thrown away after: the model's view of what surrounds it."""
STATS_BLOCK_S = 60.0
"""Seconds read at a time to measure the recording's mean and standard deviation."""
DEMUCS_OVERLAP = 0.25
"""demucs' own default overlap between the segments it splits a chunk into."""
MIN_STD = 1e-8
"""A recording quieter than this (digital silence) is not scaled."""


@dataclass(frozen=True)
class Recording:
    """A decoded recording in a scratch file: ``read(start, stop)`` gives mono float32 samples."""

    read: Callable[[int, int], np.ndarray]
    samples: int
    rate: int


def _stats(rec: Recording) -> tuple[float, float]:
    block = round(STATS_BLOCK_S * rec.rate)
    total = total_sq = 0.0
    for lo in range(0, rec.samples, block):
        x = rec.read(lo, min(rec.samples, lo + block)).astype(np.float64)
        total += float(x.sum())
        total_sq += float(np.einsum("i,i->", x, x))  # no BLAS threads (they spin on a busy machine)
    mean = total / rec.samples
    return mean, max(0.0, total_sq / rec.samples - mean * mean) ** 0.5


def separate_vocals(
    model,
    rec: Recording,
    write: Callable[[np.ndarray], None],
    *,
    device: str = "cpu",
    on_chunk: Callable[[float], None] = lambda _seconds: None,
) -> None:
    """Write the vocals stem of ``rec`` (mono float32 at ``rec.rate``, as many samples) chunk by chunk
    through ``write``, in order. ``model``: a demucs model or bag (``models.separation.load_demucs``)."""
    import torch
    from demucs.apply import apply_model

    from voicelab.audio import resample

    mean, std = _stats(rec)
    scale = std if std > MIN_STD else 1.0
    stem = list(model.sources).index(VOCALS)
    chunk, context = round(CHUNK_S * rec.rate), round(CONTEXT_S * rec.rate)
    for start in range(0, rec.samples, chunk):
        stop = min(rec.samples, start + chunk)
        lo, hi = max(0, start - context), min(rec.samples, stop + context)
        mix = resample((rec.read(lo, hi) - mean) / scale, rec.rate, model.samplerate).astype(np.float32)
        stereo = torch.from_numpy(np.stack([mix] * model.audio_channels))[None]
        with torch.no_grad():
            stems = apply_model(model, stereo, shifts=0, split=True, overlap=DEMUCS_OVERLAP, device=device)
        vocals = stems[0, stem].mean(dim=0).cpu().numpy().astype(np.float32)
        back = resample(vocals, model.samplerate, rec.rate) * scale + mean
        back = np.pad(back, (0, max(0, hi - lo - len(back))))[: hi - lo]
        write(np.ascontiguousarray(back[start - lo : stop - lo], dtype=np.float32))
        on_chunk((stop - start) / rec.rate)
