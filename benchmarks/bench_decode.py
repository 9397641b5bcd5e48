"""Streaming SNAC decode speed: ours vs the public reference's 28-token window, one vs 16 streams.

Uses the real snac_24khz configuration with random weights (same compute as the real model), built
offline into a temporary folder. Prints, side by side in one run:

* streaming throughput (seconds of audio per wall second) of the public reference's scheme (decode the
  last 4 frames every frame, keep the second) and of ``StreamingSnacDecoder``;
* time from the 28th token (4th frame) to the first audio chunk, for both;
* aggregate audio per second of 16 concurrent streams vs one stream, two ways:

  - token-paced (the serving case, and the issue's goal): each stream's tokens arrive at ``--pace`` x real
    time, as the LLM delivers them (vLLM: ~1.2-2x real time per stream), so one stream leaves the decoder
    mostly idle and 16 streams show how much of that idle capacity batching puts to use. Also run with
    batching off (one window per forward pass), so the share due to batching itself is visible;
  - decoder-bound (tokens as fast as the decoder takes them): pure decoder capacity. On a CPU one stream
    already keeps the cores busy, so this ratio stays near 1x there; it is the number to watch on a GPU.

Usage: ``python benchmarks/bench_decode.py [--seconds 4] [--streams 16] [--pace 1.2] [--device cpu]``
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time

import numpy as np


def _frames(n: int, seed: int) -> np.ndarray:
    from voicelab import orpheus

    return np.random.default_rng(seed).integers(0, orpheus.CODEBOOK_SIZE, (n, orpheus.CODES_PER_FRAME))


def reference_stream(decoder, frames: np.ndarray) -> tuple[float, float, int]:
    """The public reference: every 7 tokens decode the last 28 (4 frames), keep frame 2 of 4.

    Returns (wall seconds, seconds from the 4th frame to its first chunk, samples emitted).
    """
    from voicelab import orpheus

    window = 4
    kept = slice(orpheus.SAMPLES_PER_FRAME, 2 * orpheus.SAMPLES_PER_FRAME)  # its second frame
    start = time.perf_counter()
    first_latency = None
    samples = 0
    for i in range(window, len(frames) + 1):
        t = time.perf_counter()
        audio = decoder.decode_batch([frames[i - window : i]])[0][kept]
        if first_latency is None:
            first_latency = time.perf_counter() - t
        samples += len(audio)
    return time.perf_counter() - start, first_latency, samples


async def our_stream(
    decoder, frames: np.ndarray, pace_tokens_per_s: float | None = None
) -> tuple[float, float, int]:
    """Push one frame (7 tokens) at a time. Returns (wall s, s from the 4th frame to first chunk, samples)."""
    from voicelab import orpheus

    stream = decoder.open_stream()
    start = time.perf_counter()
    first_latency = None
    samples = 0
    for i in range(len(frames)):
        if pace_tokens_per_s:
            due = start + (i + 1) * orpheus.CODES_PER_FRAME / pace_tokens_per_s
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
        t = time.perf_counter()
        chunks = await stream.push(frames[i : i + 1])
        if chunks and first_latency is None:
            first_latency = time.perf_counter() - t
        samples += sum(len(c) for c in chunks)
    samples += sum(len(c) for c in await stream.finish())
    return time.perf_counter() - start, first_latency, samples


async def concurrent(decoder, n_streams: int, n_frames: int, pace: float | None) -> tuple[float, int, int]:
    """Aggregate audio seconds per wall second over ``n_streams`` streams; also batches and windows run."""
    from voicelab import orpheus

    batches, windows = decoder.batches_run, decoder.windows_decoded
    start = time.perf_counter()
    results = await asyncio.gather(
        *(our_stream(decoder, _frames(n_frames, s), pace) for s in range(n_streams))
    )
    wall = time.perf_counter() - start
    audio_s = sum(r[2] for r in results) / orpheus.SAMPLE_RATE
    return audio_s / wall, decoder.batches_run - batches, decoder.windows_decoded - windows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=4.0, help="audio per stream")
    parser.add_argument("--streams", type=int, default=16, help="concurrent streams")
    parser.add_argument(
        "--pace", type=float, default=1.2, help="paced runs: token delivery per stream, in x real time"
    )
    parser.add_argument("--device", default="cpu", help="torch device for SNAC")
    args = parser.parse_args(argv)

    import torch

    from voicelab import orpheus
    from voicelab.engine.decoder import StreamingSnacDecoder
    from voicelab.testing import build_tiny_snac

    with tempfile.TemporaryDirectory() as tmp:
        decoder = StreamingSnacDecoder(build_tiny_snac(tmp, real_size=True), device=args.device)
    n_frames = int(np.ceil(args.seconds * orpheus.SAMPLE_RATE / orpheus.SAMPLES_PER_FRAME))
    frames = _frames(n_frames, seed=0)
    decoder.decode_frames(frames[:8])  # warm-up (allocator, kernels)
    print(
        f"SNAC real-size config, random weights, device={args.device}, torch threads={torch.get_num_threads()}"
    )
    print(
        f"{n_frames} frames = {n_frames * orpheus.SAMPLES_PER_FRAME / orpheus.SAMPLE_RATE:.2f} s audio per stream"
    )

    ref_wall, ref_first, ref_samples = reference_stream(decoder, frames)
    our_wall, our_first, our_samples = asyncio.run(our_stream(decoder, frames))
    ref_speed = ref_samples / orpheus.SAMPLE_RATE / ref_wall
    our_speed = our_samples / orpheus.SAMPLE_RATE / our_wall
    print("\nstreaming decode, one stream, tokens as fast as the decoder takes them")
    print(f"  {'':28s}{'audio s / wall s':>18s}{'28th token -> audio':>22s}{'frames out':>12s}")
    print(
        f"  {'public reference (4 keep 1)':28s}{ref_speed:18.2f}{ref_first * 1000:19.0f} ms"
        f"{ref_samples // orpheus.SAMPLES_PER_FRAME:12d}"
    )
    print(
        f"  {'voicelab StreamingSnacDecoder':28s}{our_speed:18.2f}{our_first * 1000:19.0f} ms"
        f"{our_samples // orpheus.SAMPLES_PER_FRAME:12d}"
    )
    print(f"  speed-up {our_speed / ref_speed:.2f}x; real time = 1.00")

    pace_tps = args.pace * orpheus.TOKENS_PER_SECOND
    print(f"\nconcurrency: aggregate audio s / wall s, {args.streams} streams vs 1 (same decoder)")
    runs = (
        (f"token-paced {args.pace:g}x real time", pace_tps, decoder.max_batch),
        (f"token-paced {args.pace:g}x, batching off", pace_tps, 1),
        ("decoder-bound (unpaced)", None, decoder.max_batch),
    )
    batch_limit = decoder.max_batch
    for label, pace, max_batch in runs:
        decoder.max_batch = max_batch
        one, _, _ = asyncio.run(concurrent(decoder, 1, n_frames, pace))
        many, batches, windows = asyncio.run(concurrent(decoder, args.streams, n_frames, pace))
        print(
            f"  {label:34s} 1 stream {one:6.2f}   {args.streams} streams {many:6.2f}"
            f" ({many / args.streams:4.2f} each)   ratio {many / one:5.2f}x   ({windows} windows in {batches} passes)"
        )
    decoder.max_batch = batch_limit
    return 0


if __name__ == "__main__":
    sys.exit(main())
