"""Streaming SNAC decoding: Orpheus frames in, 24 kHz float32 audio out, every frame exactly once.

Two layers:

* ``ChunkPlanner`` (pure, no torch): for one stream, decides which span of frames to emit next and
  which window of frames (span plus context on both sides) to decode for it.
* ``StreamingSnacDecoder``: loads SNAC once, decodes windows, and batches the windows that several
  concurrent streams wait on at the same moment into one forward pass.

Why context: SNAC's decoder is convolutional, so the samples of a frame depend on a few neighbouring
frames. Decoding a window with ``context_frames`` extra frames on each side and keeping only the middle
span makes chunk boundaries match a whole-sequence decode (measured with the 24 kHz configuration:
max abs difference ~1e-4 with 2 frames of context, ~3e-7 with 3; the tests pin the tolerance).

Why growing chunks: the public reference decodes 4 frames to keep 1 (4x the decoder compute). Here the
first chunk is small (audio after ``first_chunk_frames`` = 4 frames = 28 tokens), then each chunk is as
long as the audio already emitted (so the listener has that much buffered while the next one is made),
capped at ``max_chunk_frames``; the overhead is ``2 * context / chunk`` instead of 3.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voicelab import models, orpheus

logger = logging.getLogger(__name__)

CONTEXT_FRAMES = 2
"""Frames decoded on each side of an emitted span (see the module docstring for the measured error)."""
FIRST_CHUNK_FRAMES = 4
"""First audio after this many frames (4 frames = 28 tokens, the public reference's latency)."""
MAX_CHUNK_FRAMES = 32
"""Largest span decoded at once: 32 frames = 2.7 s of audio; bounds latency and memory per window."""
MAX_BATCH = 16
"""Most windows decoded in one forward pass."""
MAX_BATCH_FRAMES = {"cpu": 32, "cuda": 1024}
"""Most frames (windows x window length) in one forward pass, per device type. On CPU the cost per frame is
flat up to ~32 frames per pass and doubles past ~40, where the last blocks' activations (64 x 2048 floats
per frame, 512 KiB) outgrow a 32 MiB L3 cache; batching small windows amortises the per-call cost. The
measurements are in docs/benchmarks.md (streaming SNAC decode)."""


@dataclass(frozen=True)
class DecodeWindow:
    """Frames to decode for one chunk and which of them to keep.

    ``frames``: ``(W, 7)`` codes. The chunk is decoded audio frames ``[keep_start, keep_stop)`` of the
    window, i.e. samples ``keep_start * SAMPLES_PER_FRAME`` to ``keep_stop * SAMPLES_PER_FRAME``.
    """

    frames: np.ndarray
    keep_start: int
    keep_stop: int

    @property
    def n_keep(self) -> int:
        return self.keep_stop - self.keep_start


class ChunkPlanner:
    """Plans the decode windows of one stream. Pure bookkeeping: feed frames, get windows.

    ``add(frames)`` returns the windows that became decodable; ``finish()`` returns the windows that flush
    the tail (no right context exists past the end). Every frame lands in exactly one window's kept span,
    in order, so the concatenated chunks have ``frames * SAMPLES_PER_FRAME`` samples.
    """

    def __init__(
        self,
        *,
        context_frames: int = CONTEXT_FRAMES,
        first_chunk_frames: int = FIRST_CHUNK_FRAMES,
        max_chunk_frames: int = MAX_CHUNK_FRAMES,
    ) -> None:
        if context_frames < 0 or max_chunk_frames < 1:
            raise ValueError("context_frames must be >= 0 and max_chunk_frames >= 1")
        if first_chunk_frames <= context_frames:
            raise ValueError(
                f"first_chunk_frames ({first_chunk_frames}) must exceed context_frames ({context_frames}): "
                "the first chunk emits first_chunk_frames - context_frames frames"
            )
        self.context = context_frames
        self.first_span = min(first_chunk_frames - context_frames, max_chunk_frames)
        self.max_span = max_chunk_frames
        self._frames = np.empty((0, orpheus.CODES_PER_FRAME), dtype=np.int64)
        self._offset = 0  # global index of self._frames[0]; older frames are dropped once not needed
        self.total = 0
        self.emitted = 0
        self.finished = False

    def add(self, frames: np.ndarray) -> list[DecodeWindow]:
        if self.finished:
            raise RuntimeError("ChunkPlanner.add after finish()")
        frames = np.asarray(frames, dtype=np.int64).reshape(-1, orpheus.CODES_PER_FRAME)
        if len(frames):
            self._frames = np.concatenate([self._frames, frames])
            self.total += len(frames)
        windows = []
        while True:
            ready = self.total - self.emitted - self.context  # frames that have full right context
            target = self.first_span if self.emitted == 0 else min(self.max_span, max(self.emitted, 1))
            if ready < target:
                break
            windows.append(self._window(min(ready, self.max_span), right_context=self.context))
        return windows

    def finish(self) -> list[DecodeWindow]:
        """Flush: the frames still unemitted, decoded with left context only (nothing follows them)."""
        self.finished = True
        windows = []
        while self.emitted < self.total:
            windows.append(self._window(min(self.total - self.emitted, self.max_span), right_context=None))
        return windows

    def _window(self, span: int, right_context: int | None) -> DecodeWindow:
        start = max(self.emitted - self.context, 0)
        stop = self.emitted + span
        stop = self.total if right_context is None else min(stop + right_context, self.total)
        window = self._frames[start - self._offset : stop - self._offset]
        decoded = DecodeWindow(window, self.emitted - start, self.emitted - start + span)
        self.emitted += span
        # Keep only what the next window's left context needs.
        drop = max(self.emitted - self.context, 0) - self._offset
        if drop > 0:
            self._frames = self._frames[drop:]
            self._offset += drop
        return decoded


class StreamingSnacDecoder:
    """SNAC 24 kHz loaded once; decodes whole sequences or streams, batching concurrent streams.

    ``snac_model``: a hub id (``hubertsiuzdak/snac_24khz``) or a local folder, loaded at construction with
    ``models.load_snac`` (``ModelLoadError`` for one that cannot be loaded or is not the 24 kHz codec).
    ``device``: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...

    Concurrency: windows submitted from many streams while a decode runs are decoded together in the next
    forward pass (grouped by window length, at most ``max_batch`` windows and ``max_batch_frames`` frames
    at a time; the frame cap defaults per device type, see ``MAX_BATCH_FRAMES``). Decoding runs in a worker
    thread so the event loop stays free. One instance serves one event loop.
    """

    def __init__(
        self,
        snac_model: str | Path,
        device: str = "cpu",
        *,
        context_frames: int = CONTEXT_FRAMES,
        first_chunk_frames: int = FIRST_CHUNK_FRAMES,
        max_chunk_frames: int = MAX_CHUNK_FRAMES,
        max_batch: int = MAX_BATCH,
        max_batch_frames: int | None = None,
    ) -> None:
        import torch

        self.device = torch.device(device)
        self.model = models.load_snac(snac_model, str(self.device))  # checked: 24 kHz, prepared
        self.snac_model = str(snac_model)
        self._planner_args = {
            "context_frames": context_frames,
            "first_chunk_frames": first_chunk_frames,
            "max_chunk_frames": max_chunk_frames,
        }
        ChunkPlanner(**self._planner_args)  # validate now, not on the first request
        self.max_batch = max_batch
        self.max_batch_frames = max_batch_frames or MAX_BATCH_FRAMES.get(
            self.device.type, MAX_BATCH_FRAMES["cuda"]
        )
        self._pending: list[tuple[DecodeWindow, asyncio.Future]] = []
        self._worker: asyncio.Task | None = None
        self.batches_run = 0
        self.windows_decoded = 0
        logger.info("SNAC decoder %s loaded on %s", snac_model, self.device)

    # --- synchronous decoding ------------------------------------------------------------------------
    def decode_frames(self, frames: np.ndarray) -> np.ndarray:
        """Whole-sequence decode: frames ``(N, 7)`` -> ``(N * SAMPLES_PER_FRAME,)`` float32 at 24 kHz."""
        frames = np.asarray(frames, dtype=np.int64).reshape(-1, orpheus.CODES_PER_FRAME)
        if len(frames) == 0:
            return np.zeros(0, dtype=np.float32)
        return self.decode_batch([frames])[0]

    def decode_batch(self, batch: list[np.ndarray]) -> np.ndarray:
        """Equal-length frame windows ``B x (W, 7)`` -> ``(B, W * SAMPLES_PER_FRAME)`` float32."""
        import torch

        levels = [orpheus.frames_to_codes(f) for f in batch]  # validates every code is in [0, 4096)
        codes = [
            torch.from_numpy(np.stack([lv[i] for lv in levels])).to(self.device)
            for i in range(orpheus.SNAC_LEVELS)
        ]
        with torch.inference_mode():
            audio = self.model.decode(codes)  # (B, 1, W * SAMPLES_PER_FRAME)
        return audio[:, 0].float().cpu().numpy()

    # --- streaming -----------------------------------------------------------------------------------
    def open_stream(self) -> DecodeStream:
        """A per-request stream: ``await push(frames)`` and ``await finish()`` return audio chunks."""
        return DecodeStream(self, ChunkPlanner(**self._planner_args))

    async def stream(self, frames: AsyncIterator[np.ndarray]) -> AsyncIterator[np.ndarray]:
        """Decode an async stream of ``(K, 7)`` frame arrays into float32 chunks, flushing at the end."""
        stream = self.open_stream()
        async for update in frames:
            for chunk in await stream.push(update):
                yield chunk
        for chunk in await stream.finish():
            yield chunk

    async def decode_window(self, window: DecodeWindow) -> np.ndarray:
        """Decode one window (batched with whatever else is waiting) and return its kept samples."""
        orpheus.frames_to_codes(window.frames)  # a bad window fails its own stream, not the whole batch
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((window, future))
        if self._worker is None or self._worker.done() or self._worker.get_loop() is not loop:
            self._worker = loop.create_task(self._run_batches())
        return await future

    async def _run_batches(self) -> None:
        while self._pending:
            pending, self._pending = self._pending, []
            pending = [(w, f) for w, f in pending if not f.cancelled()]
            groups: dict[int, list[tuple[DecodeWindow, asyncio.Future]]] = {}
            for item in pending:
                groups.setdefault(len(item[0].frames), []).append(item)
            for length, group in groups.items():
                size = max(1, min(self.max_batch, self.max_batch_frames // length))
                for i in range(0, len(group), size):
                    await self._decode_group(group[i : i + size])

    async def _decode_group(self, group: list[tuple[DecodeWindow, asyncio.Future]]) -> None:
        try:
            audio = await asyncio.to_thread(self.decode_batch, [w.frames for w, _ in group])
        except asyncio.CancelledError:
            for _, f in group:
                if not f.done():
                    f.cancel()
            raise
        except Exception as e:
            for _, f in group:
                if not f.done():
                    f.set_exception(e)
            return
        self.batches_run += 1
        self.windows_decoded += len(group)
        for (w, f), samples in zip(group, audio, strict=True):
            if not f.done():
                kept = samples[
                    w.keep_start * orpheus.SAMPLES_PER_FRAME : w.keep_stop * orpheus.SAMPLES_PER_FRAME
                ]
                f.set_result(np.ascontiguousarray(kept, dtype=np.float32))

    async def aclose(self) -> None:
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()


class DecodeStream:
    """One request's decode state. Chunks come back in order; their lengths sum to frames x 2048."""

    def __init__(self, decoder: StreamingSnacDecoder, planner: ChunkPlanner) -> None:
        self._decoder = decoder
        self.planner = planner

    async def push(self, frames: np.ndarray) -> list[np.ndarray]:
        """Add ``(K, 7)`` frames; returns the float32 chunks that became ready (maybe none)."""
        return [await self._decoder.decode_window(w) for w in self.planner.add(frames)]

    async def finish(self) -> list[np.ndarray]:
        """End of stream: decode and return the tail."""
        return [await self._decoder.decode_window(w) for w in self.planner.finish()]
