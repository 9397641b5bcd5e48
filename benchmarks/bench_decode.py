"""Streaming SNAC decode: how many listeners one machine serves in real time, and at what latency.

Uses the real snac_24khz configuration with random weights (same compute as the real model), built offline
into a temporary folder, decoded by ``voicelab.engine.decoder.StreamingSnacDecoder`` as the server does.
Tokens are pushed one frame (7 tokens) at a time as fast as the decoder takes them (the LLM is not the
limit), every stream starting at once. Three measurements, each repeated ``--rounds`` times:

1. Capacity: the largest number of concurrent streams N for which every stream's 5th-percentile real-time
   factor is >= 1.0, found by doubling N, then bisecting. A stream's real-time factor samples are its
   chunks after the first: chunk seconds / wall seconds since the previous chunk (below 1.0 the listener
   runs out of audio). Printed with the first-audio latency (stream start -> first chunk) p50/p95 over
   the streams at N. On CPU two torch thread counts are compared as A and B (``--threads A B``): on a
   shared machine the count decides the result more than anything else measured.
2. One stream, ours vs the public reference's scheme (decode the last 4 frames every frame, keep the
   second): audio s / wall s and first-audio latency, interleaved A/B.
3. Aggregate audio seconds per wall second at 1, 4, 16, 64 streams (``--aggregate``).

usage: python benchmarks/bench_decode.py [--device cpu|cuda] [--rounds 3] [--seconds 3] [--threads 1 2]
       [--aggregate 1 4 16 64] [--aggregate-seconds 2] [--max-streams 64] [--skip-reference]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np

from harness import MIN_ROUNDS, Comparison, load_line, machine_line, median_range

RTF_PERCENTILE = 5  # a stream counts as real time when 95% of its chunks come at least as fast as they play
REAL_TIME = 1.0


@dataclass
class StreamStats:
    first_audio_s: float
    audio_s: float
    rtf: list[float] = field(default_factory=list)  # per chunk after the first

    @property
    def rtf_p5(self) -> float:
        return float(np.percentile(self.rtf, RTF_PERCENTILE)) if self.rtf else float("inf")


def _frames(n: int, seed: int) -> np.ndarray:
    from voicelab import orpheus

    return np.random.default_rng(seed).integers(0, orpheus.CODEBOOK_SIZE, (n, orpheus.CODES_PER_FRAME))


async def one_stream(decoder, frames: np.ndarray) -> StreamStats:
    from voicelab import orpheus

    stream = decoder.open_stream()
    start = last = time.perf_counter()
    stats = StreamStats(first_audio_s=float("nan"), audio_s=0.0)

    def record(chunks) -> None:
        nonlocal last
        for chunk in chunks:
            now, seconds = time.perf_counter(), len(chunk) / orpheus.SAMPLE_RATE
            if stats.audio_s == 0.0:
                stats.first_audio_s = now - start
            else:
                stats.rtf.append(seconds / max(now - last, 1e-9))
            stats.audio_s += seconds
            last = now

    for i in range(len(frames)):
        record(await stream.push(frames[i : i + 1]))
    record(await stream.finish())
    return stats


async def _streams(decoder, n: int, n_frames: int) -> tuple[list[StreamStats], float]:
    start = time.perf_counter()
    stats = await asyncio.gather(*(one_stream(decoder, _frames(n_frames, seed)) for seed in range(n)))
    return list(stats), time.perf_counter() - start


def run_streams(decoder, n: int, n_frames: int) -> tuple[list[StreamStats], float]:
    return asyncio.run(_streams(decoder, n, n_frames))


def real_time(stats: list[StreamStats]) -> bool:
    return min(s.rtf_p5 for s in stats) >= REAL_TIME


def capacity(decoder, n_frames: int, max_streams: int) -> tuple[int, list[StreamStats]]:
    """Largest N <= max_streams whose streams all stay real time; (0, stats of 1 stream) if none does."""
    good, good_stats = 0, []
    n, bad = 1, None
    while n <= max_streams:  # doubling
        stats, _ = run_streams(decoder, n, n_frames)
        if not real_time(stats):
            bad = n
            if n == 1:
                return 0, stats
            break
        good, good_stats, n = n, stats, n * 2
    if bad is None:
        return good, good_stats
    while bad - good > 1:  # bisect between the last good and the first bad
        mid = (good + bad) // 2
        stats, _ = run_streams(decoder, mid, n_frames)
        if real_time(stats):
            good, good_stats = mid, stats
        else:
            bad = mid
    return good, good_stats


def reference_stream(decoder, frames: np.ndarray) -> dict[str, float]:
    """The public reference: every 7 tokens decode the last 28 (4 frames), keep frame 2 of 4."""
    from voicelab import orpheus

    window = 4
    kept = slice(orpheus.SAMPLES_PER_FRAME, 2 * orpheus.SAMPLES_PER_FRAME)  # its second frame
    start = time.perf_counter()
    first = None
    samples = 0
    for i in range(window, len(frames) + 1):
        samples += len(decoder.decode_batch([frames[i - window : i]])[0][kept])
        first = first if first is not None else time.perf_counter() - start
    return {"audio_s_per_s": samples / orpheus.SAMPLE_RATE / (time.perf_counter() - start), "first_s": first}


def ours_one(decoder, frames: np.ndarray) -> dict[str, float]:
    (stats,), wall = run_streams(decoder, 1, len(frames))
    return {"audio_s_per_s": stats.audio_s / wall, "first_s": stats.first_audio_s}


def _set_threads(n: int | None):
    import torch

    def apply() -> None:
        if n:
            torch.set_num_threads(n)

    return apply


def capacity_section(decoder, args, n_frames: int) -> None:
    import torch

    print(f"\n1. capacity: concurrent streams with every stream's p{RTF_PERCENTILE} real-time factor >= 1.0")
    print(
        f"   {n_frames} frames per stream, tokens unpaced, all streams start together; {args.rounds} rounds"
    )
    print("  " + load_line("before"))
    variants = [None] if decoder.device.type != "cpu" else (args.threads or [torch.get_num_threads()])
    found: dict = {v: [] for v in variants}
    worst_rtf: dict = {v: [] for v in variants}
    latencies: dict = {v: [] for v in variants}
    for r in range(args.rounds):
        order = variants if r % 2 == 0 else variants[::-1]
        for v in order:
            _set_threads(v)()
            n, stats = capacity(decoder, n_frames, args.max_streams)
            found[v].append(n)
            latencies[v] += [s.first_audio_s for s in stats]
            worst = min(s.rtf_p5 for s in stats)
            worst_rtf[v].append(worst)
            label = f"threads={v}" if v else decoder.device.type
            print(f"  round {r + 1}: {label}: capacity {n} (worst stream p{RTF_PERCENTILE} RTF {worst:.2f})")
    print("  " + load_line("after"))
    for v in variants:
        label = f"torch threads={v}" if v else f"device {decoder.device}"
        lat = np.array(latencies[v]) * 1000
        print(
            f"  {label}: capacity {median_range(found[v], 'g')} streams (median, min-max of rounds); "
            f"first audio p50 {np.percentile(lat, 50):.0f} ms, p95 {np.percentile(lat, 95):.0f} ms "
            f"({len(lat)} streams pooled: those at the capacity found, or single streams at capacity 0); "
            f"worst stream's p{RTF_PERCENTILE} RTF there {median_range(worst_rtf[v], '.2f')}"
        )
    best = max(variants, key=lambda v: (statistics.median(found[v]), statistics.median(worst_rtf[v])))
    if best:
        print(f"  sections 2 and 3 run with torch threads={best} (the higher median capacity)")
    _set_threads(best)()


def aggregate_section(decoder, args) -> None:
    from voicelab import orpheus

    n_frames = int(np.ceil(args.aggregate_seconds * orpheus.SAMPLE_RATE / orpheus.SAMPLES_PER_FRAME))
    print(f"\n3. aggregate audio s / wall s, unpaced, {n_frames} frames per stream, {args.rounds} rounds")
    print("  " + load_line("before"))
    results: dict[int, list[float]] = {n: [] for n in args.aggregate}
    for r in range(args.rounds):
        counts = args.aggregate if r % 2 == 0 else args.aggregate[::-1]
        for n in counts:
            stats, wall = run_streams(decoder, n, n_frames)
            results[n].append(sum(s.audio_s for s in stats) / wall)
            print(f"  round {r + 1}: {n} streams {results[n][-1]:.3g} audio s/s", flush=True)
    print("  " + load_line("after"))
    one = results[args.aggregate[0]]
    for n, values in results.items():
        ratio = [v / o for v, o in zip(values, one, strict=True)]
        print(
            f"  {n:3d} streams: {median_range(values)} audio s/s "
            f"(vs {args.aggregate[0]} stream(s): {median_range(ratio, '.2f')}x, per-round ratios)"
        )


def reference_section(decoder, args, n_frames: int) -> None:
    frames = _frames(n_frames, seed=0)
    print("\n2. one stream: public reference (A) vs StreamingSnacDecoder (B), tokens unpaced")
    print("  " + load_line("before"))
    cmp = Comparison("public reference (decode 4 frames, keep 1)", "voicelab StreamingSnacDecoder")
    cmp.run(args.rounds, lambda: reference_stream(decoder, frames), lambda: ours_one(decoder, frames))
    print("  " + load_line("after"))
    print(cmp.report("audio s/s", "audio_s_per_s", higher_is_better=True))
    for side, name in (("a", "reference"), ("b", "ours")):
        first = [v * 1000 for v in cmp.values(side, "first_s")]
        print(f"  first audio, {name}: {median_range(first, '.0f')} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu", help="torch device for SNAC")
    parser.add_argument("--rounds", type=int, default=MIN_ROUNDS, help=f"rounds (>= {MIN_ROUNDS})")
    parser.add_argument("--seconds", type=float, default=3.0, help="audio per stream, capacity and reference")
    parser.add_argument(
        "--threads", type=int, nargs="*", default=[1, 2], help="CPU only: torch thread counts compared (A B)"
    )
    parser.add_argument("--max-streams", type=int, default=64, help="capacity search stops here")
    parser.add_argument("--aggregate", type=int, nargs="*", default=[1, 4, 16, 64], help="stream counts")
    parser.add_argument("--aggregate-seconds", type=float, default=2.0, help="audio per stream, aggregate")
    parser.add_argument("--skip-reference", action="store_true", help="skip the one-stream reference A/B")
    args = parser.parse_args(argv)
    if args.rounds < MIN_ROUNDS:
        parser.error(f"--rounds must be at least {MIN_ROUNDS}")

    import torch

    from voicelab import orpheus
    from voicelab.engine.decoder import StreamingSnacDecoder
    from voicelab.testing import build_tiny_snac

    with tempfile.TemporaryDirectory() as tmp:
        decoder = StreamingSnacDecoder(build_tiny_snac(tmp, real_size=True), device=args.device)
    n_frames = int(np.ceil(args.seconds * orpheus.SAMPLE_RATE / orpheus.SAMPLES_PER_FRAME))
    decoder.decode_frames(_frames(8, seed=0))  # warm-up (allocator, kernels)
    print(machine_line())
    print(
        f"SNAC real-size config (random weights), device={decoder.device}, torch {torch.__version__}, "
        f"default torch threads {torch.get_num_threads()}"
    )
    capacity_section(decoder, args, n_frames)
    if not args.skip_reference:
        reference_section(decoder, args, n_frames)
    if args.aggregate:
        aggregate_section(decoder, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
