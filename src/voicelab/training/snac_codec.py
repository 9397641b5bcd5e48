"""SNAC encoding for training: encode clips in batches, cache codes per clip (``models.load_snac`` loads).

Codes are kept as Orpheus frames ``(N, 7)`` (see ``voicelab.orpheus``), N = ceil(samples / 2048).

A cache entry's key is the sha256 of the codec's fingerprint (``checkpoint_fingerprint``: the bytes of its
checkpoint files) and the clip's float32 24 kHz samples. So the cache answers "has this codec already
encoded these exact samples?" whatever the clip, dataset or run is called, and deciding that needs neither
SNAC loaded nor anything but reading files: a rerun whose clips are all cached never loads SNAC.

Batching pads clips to a common length, and padding changes what a convolution sees near a clip's end.
So every clip, alone or in a batch, is encoded followed by at least ``ENCODE_TAIL_SAMPLES`` of silence,
more than the encoder's right receptive field: its codes then do not depend on which batch it was in,
and a cache entry is the same whichever way it was computed.
"""

from __future__ import annotations

import hashlib
import logging
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voicelab import models, orpheus
from voicelab.fileio import atomic_output
from voicelab.progress import progress_bar

logger = logging.getLogger(__name__)

ENCODER_RIGHT_CONTEXT_SAMPLES = 5268
"""How far right of a sample the snac_24khz encoder looks: residual units (kernel 7, dilations 1+3+9)
reach 3 * 13 = 39 steps at strides 1, 2, 8, 64 (2925 samples), the downsampling convolutions 804, the first
convolution 3 and the last (kernel 7 at stride 512) 1536."""
ENCODE_TAIL_SAMPLES = (
    -(-ENCODER_RIGHT_CONTEXT_SAMPLES // orpheus.SAMPLES_PER_FRAME) * orpheus.SAMPLES_PER_FRAME
)
"""Silence appended after every clip (3 frames, 6144 samples): covers the right receptive field."""
DEFAULT_ENCODE_BATCH_SIZE = 8
CPU_ENCODE_BATCH_SIZE = 1
"""On CPU a batch only adds padding work (no gain measured, docs/benchmarks.md); GPUs gain from 8."""


CPU_MAX_PASS_SAMPLES = 2**16
"""On CPU, most samples (rows x padded width) in one encoder pass; longer clips still go alone. Three live
48-channel float32 activations of 65 536 samples (3 x 48 x 4 B x 65 536 = 36 MiB) about fill the 32 MiB
L3 cache; past that the per-sample cost doubles (docs/benchmarks.md, SNAC encode batching). So a
``--snac-batch-size`` above 1 on CPU only groups short clips."""


def auto_batch_size(device: str) -> int:
    return DEFAULT_ENCODE_BATCH_SIZE if device.startswith("cuda") else CPU_ENCODE_BATCH_SIZE


def max_pass_samples(device: str) -> int | None:
    """The per-pass sample cap for ``device`` (None: no cap, batches are bounded by the batch size only)."""
    return None if device.startswith("cuda") else CPU_MAX_PASS_SAMPLES


def encoded_width(n_samples: int) -> int:
    """Samples one clip occupies in an encoder pass: whole frames plus the silent tail."""
    return frames_for(n_samples) * orpheus.SAMPLES_PER_FRAME + ENCODE_TAIL_SAMPLES


def plan_passes(lengths: Sequence[int], batch_size: int, max_samples: int | None) -> list[list[int]]:
    """Group clip indices, in the given order, into passes of at most ``batch_size`` clips and (when set)
    ``max_samples`` rows x padded width; a clip too long for the cap gets a pass of its own."""
    passes: list[list[int]] = []
    width = 0
    for i, n in enumerate(lengths):
        w = max(width, encoded_width(n))
        current = passes[-1] if passes else None
        if (
            current is not None
            and len(current) < batch_size
            and (max_samples is None or w * (len(current) + 1) <= max_samples)
        ):
            current.append(i)
            width = w
        else:
            passes.append([i])
            width = encoded_width(n)
    return passes


CACHE_FORMAT_VERSION = 2
"""Bump when the cached content or its key changes meaning; old entries then simply miss.
(2: the codec is named by its checkpoint files' bytes, no longer by its id and its loaded weights.)"""
HASH_CHUNK_BYTES = 1 << 20
"""Read size while hashing a checkpoint file (the 24 kHz SNAC weights are ~80 MB)."""


class CacheEntryError(ValueError):
    """A cache file that is unreadable or does not hold valid frames."""


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        while chunk := f.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def checkpoint_fingerprint(model_id: str) -> str | None:
    """sha256 over the SNAC checkpoint's files (``config.json``, ``pytorch_model.bin``), read from disk
    without loading SNAC: a local folder's files, or a hub id's files in the local hub cache
    (``models.snac_checkpoint_files``). None when they are not on disk (a hub id not downloaded yet).

    The bytes name the codec, not the id: a hub id and a downloaded copy of it share cache entries, and
    any change to either file gives new keys.
    """
    files = models.snac_checkpoint_files(model_id)
    if files is None:
        return None
    digest = hashlib.sha256(f"snac-files:v{CACHE_FORMAT_VERSION}\n".encode())
    for name, path in zip(models.SNAC_CHECKPOINT_FILES, files, strict=True):
        digest.update(f"{name}:{_file_sha256(path)}\n".encode())
    return digest.hexdigest()


def weights_fingerprint(model) -> str:
    """sha256 over a loaded model's state dict (names and bytes): the key when the checkpoint files
    cannot be located even after loading. Weights baked on another device may differ in the last bit,
    which costs a cache miss, never a wrong hit."""
    digest = hashlib.sha256(f"snac-weights:v{CACHE_FORMAT_VERSION}\n".encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def cache_key(audio: np.ndarray, fingerprint: str) -> str:
    """Content address of one clip's codes: its float32 24 kHz samples and the codec fingerprint."""
    digest = hashlib.sha256(fingerprint.encode())
    digest.update(np.ascontiguousarray(audio, dtype=np.float32).tobytes())
    return digest.hexdigest()


def frames_for(n_samples: int) -> int:
    """SNAC frames a clip of ``n_samples`` encodes to (SNAC pads up to whole frames)."""
    return -(-n_samples // orpheus.SAMPLES_PER_FRAME)


def model_device(model) -> str:
    """The device ``model``'s weights are on, e.g. ``"cpu"`` or ``"cuda:0"``."""
    return str(next(model.parameters()).device)


def encode_batch(model, clips: Sequence[np.ndarray], device: str | None = None) -> list[np.ndarray]:
    """Encode float32 24 kHz clips ``(T_i,)`` in one call; returns frames ``(N_i, 7)`` per clip.

    Each clip is zero-padded to its whole frames plus ``ENCODE_TAIL_SAMPLES``, then to the batch's longest.
    ``device``: where the batch goes; by default the model's own device.
    """
    import torch

    if not clips:
        return []
    n_frames = [frames_for(len(c)) for c in clips]
    width = max(encoded_width(len(c)) for c in clips)
    batch = np.zeros((len(clips), 1, width), dtype=np.float32)
    for row, clip in enumerate(clips):
        batch[row, 0, : len(clip)] = clip
    with torch.inference_mode():
        codes = model.encode(torch.from_numpy(batch).to(torch.device(device or model_device(model))))
    levels = [level.cpu().numpy() for level in codes]
    frames = []
    for row, n in enumerate(n_frames):
        per_clip = [
            level[row, : n * per_frame]
            for level, per_frame in zip(levels, orpheus.CODES_PER_LEVEL_PER_FRAME, strict=True)
        ]
        frames.append(orpheus.codes_to_frames(per_clip))
    return frames


class CodeCache:
    """Per-clip frames on disk, ``{root}/{key[:2]}/{key}.npz``; written atomically, damaged entries dropped."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def get(self, key: str, expected_frames: int) -> np.ndarray | None:
        """The cached frames, or None when absent or damaged (a damaged file is deleted, to be recomputed)."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            frames = _read_entry(path)
            if len(frames) != expected_frames:
                raise CacheEntryError(f"{len(frames)} frames, expected {expected_frames}")
        except CacheEntryError as e:
            logger.warning("damaged SNAC cache entry %s (%s): recomputing it", path, e)
            path.unlink(missing_ok=True)
            return None
        return frames

    def put(self, key: str, frames: np.ndarray) -> None:
        path = self.path(key)
        with atomic_output(path) as tmp, tmp.open("wb") as f:
            np.savez(f, frames=np.asarray(frames, dtype=np.int16))  # codes < 4096 fit in int16


def _read_entry(path: Path) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as data:
            frames = np.asarray(data["frames"], dtype=np.int64)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise CacheEntryError(f"unreadable: {e}") from e
    try:
        orpheus.frames_to_codes(frames)  # validates the shape (N, 7) and the code range
    except orpheus.ContractError as e:
        raise CacheEntryError(str(e)) from e
    return frames


@dataclass
class EncodeStats:
    encoded: int = 0
    from_cache: int = 0
    failed: int = 0


def encode_clips(
    items: Sequence[tuple[str, Callable[[], np.ndarray]]],
    model,
    fingerprint: str | None,
    *,
    cache: CodeCache | None,
    load_model: Callable[[], Any] | None = None,
    device: str | None = None,
    batch_size: int = DEFAULT_ENCODE_BATCH_SIZE,
    max_samples: int | str | None = "auto",
    window: int = 256,
    on_error: Callable[[str, Exception], None] | None = None,
    progress: bool = True,
) -> tuple[dict[str, np.ndarray], EncodeStats]:
    """Frames for each ``(clip key, load_audio)`` item, by clip key, reading and writing ``cache`` unless it
    is None.

    ``model`` may be None with ``load_model`` given: it is then called once, at the first clip the cache
    does not hold (a fully cached run never loads the codec). ``fingerprint`` keys the cache (unused
    without one). Audio is loaded ``window`` clips at a time (bounded memory); cache misses in a window
    are sorted by length and encoded ``batch_size`` at a time so little padding is computed, each pass
    holding at most ``max_samples`` samples (``"auto"``: ``max_pass_samples(device)``). ``load_audio``
    may raise ``AudioError``: the item is then reported through ``on_error`` and left out.
    """
    if model is None and load_model is None:
        raise ValueError("encode_clips needs a model or load_model")
    if cache is not None and fingerprint is None:
        raise ValueError("a cache needs the codec's fingerprint")
    result: dict[str, np.ndarray] = {}
    stats = EncodeStats()
    # disable=None: tqdm draws on a terminal only; in a log (no redraws) the bar logs a line every 5%
    bar = progress_bar(
        total=len(items), desc="SNAC encoding", unit="clip", disable=None if progress else True
    )
    for start in range(0, len(items), window):
        pending = _lookup(items[start : start + window], fingerprint, cache, result, stats, on_error, bar)
        if not pending:
            continue
        if model is None:
            model = load_model()
        device = device or model_device(model)
        cap = max_pass_samples(device) if max_samples == "auto" else max_samples
        pending.sort(key=lambda item: len(item[2]))
        for indices in plan_passes([len(audio) for _, _, audio in pending], batch_size, cap):
            chunk = [pending[i] for i in indices]
            for (key, digest, _), frames in zip(
                chunk, encode_batch(model, [audio for _, _, audio in chunk], device), strict=True
            ):
                result[key] = frames
                if cache is not None:
                    cache.put(digest, frames)
                stats.encoded += 1
            bar.update(len(chunk))
    bar.close()
    return result, stats


def _lookup(items, fingerprint, cache, result, stats, on_error, bar) -> list[tuple[str, str, np.ndarray]]:
    """Load each item's audio; cached frames go into ``result``, the rest come back as (clip key, cache
    key, audio)."""
    from voicelab.audio import AudioError

    pending = []
    for key, load in items:
        try:
            audio = load()
        except AudioError as e:
            stats.failed += 1
            if on_error is not None:
                on_error(key, e)
            bar.update(1)
            continue
        digest = cache_key(audio, fingerprint) if cache is not None else ""
        frames = cache.get(digest, frames_for(len(audio))) if cache is not None else None
        if frames is not None:
            result[key] = frames
            stats.from_cache += 1
            bar.update(1)
        else:
            pending.append((key, digest, audio))
    return pending
