"""Benchmark the dataset-quality measures the transcribe step adds, offline, on espeak-ng speech.

1. Other-speaker flag: a 4:1 mix of a main voice and another espeak-ng voice; precision and recall of
   "other speaker?" (under the default --speaker-threshold) and of every speaker flag in the review
   (with "voice unlike the other clips?"), and the similarity ranges of both voices.
2. DNSMOS: a clean clip, the same with white noise, the same with a pulsing chord (a music bed).
3. Time per clip of the extra work (speaker embedding, DNSMOS, speech time), models warm.

    python benchmarks/bench_quality.py --clips 20 --other en-us+f3 en-gb-x-rp
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

WORDS = [
    "morning",
    "river",
    "garden",
    "window",
    "music",
    "yellow",
    "mountain",
    "letter",
    "kitchen",
    "winter",
    "station",
    "island",
    "candle",
    "market",
    "bridge",
    "forest",
    "pocket",
    "silver",
    "thunder",
    "harbour",
]
OTHER_EVERY = 5  # every fifth clip is the other voice: 4:1


def _sentence(i: int) -> str:
    w = [WORDS[(i * k + 3) % len(WORDS)] for k in (1, 3, 7, 11)]
    return f"The {w[0]} and the {w[1]} were near the {w[2]}, so we walked to the {w[3]} together."


def _clips(folder: Path, n: int, main_voice: str, other: str):
    from voicelab.audio import read_audio
    from voicelab.testing import speak

    audios, is_other = [], []
    for i in range(n):
        odd = i % OTHER_EVERY == OTHER_EVERY - 1
        path = speak(
            [0.2, _sentence(i), 0.2], folder / f"{other}_{i:03d}.wav", voice=other if odd else main_voice
        )
        audios.append(read_audio(path, 16_000)[0])
        is_other.append(odd)
    return audios, is_other


def speaker_flag(folder: Path, n: int, main_voice: str, other: str) -> None:
    import numpy as np

    from voicelab import quality, review

    audios, is_other = _clips(folder, n, main_voice, other)
    emb = quality.speaker_embeddings(audios, 16_000)
    clips = [review.ClipSignals(f"c{i:03d}", "x", 1.0, embedding=e.tolist()) for i, e in enumerate(emb)]
    ctx = review.speaker_context(clips)
    sims = np.array([ctx.similarity[c.key] for c in clips])
    truth = np.array(is_other)

    def pr(flagged):
        tp = int((flagged & truth).sum())
        return f"{tp / max(int(flagged.sum()), 1):.2f} / {tp / max(int(truth.sum()), 1):.2f}"

    listed = sims < max(ctx.threshold, ctx.outlier_below)
    top = np.argsort(sims)[: int(truth.sum())]
    print(
        f"| {main_voice} vs {other} ({n - truth.sum()}:{truth.sum()}) | {pr(sims < ctx.threshold)} | "
        f"{pr(listed)} | {sims[~truth].min():.2f}-{sims[~truth].max():.2f} | "
        f"{sims[truth].min():.2f}-{sims[truth].max():.2f} | {'yes' if truth[top].all() else 'no'} |"
    )


def dnsmos_and_timing(folder: Path, n: int, main_voice: str) -> None:
    import numpy as np

    from voicelab import quality
    from voicelab import transcribe as tr

    audios, _ = _clips(folder, n, main_voice, main_voice)
    clean = audios[0]
    t = np.arange(len(clean)) / 16_000
    chord = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6, 440.0, 554.4)) / 5
    bed = (chord * (0.5 + 0.5 * np.sin(2 * np.pi * 2.0 * t))).astype(np.float32)
    noise = np.random.default_rng(0).standard_normal(len(clean)).astype(np.float32)
    for name, audio in (
        ("clean", clean),
        ("white noise 0.1", clean + 0.1 * noise),
        ("chord bed 0.2", clean + 0.2 * bed),
    ):
        s = quality.dnsmos(audio, 16_000)
        print(f"| {name} | {s.sig:.2f} | {s.bak:.2f} | {s.ovrl:.2f} |")
    tr.measure_quality(audios[:2])  # warm: models loaded
    seconds = sum(len(a) for a in audios) / 16_000
    timings = {}
    for name, fn in (
        ("speaker embedding (batched)", lambda: quality.speaker_embeddings(audios, 16_000)),
        ("DNSMOS", lambda: [quality.dnsmos(a, 16_000) for a in audios]),
        ("speech time", lambda: [quality.speech_seconds(a, 16_000) for a in audios]),
        ("all (measure_quality)", lambda: tr.measure_quality(audios)),
    ):
        start = time.perf_counter()
        fn()
        timings[name] = time.perf_counter() - start
    print(f"\n{n} clips, {seconds / n:.1f} s each on average:\n")
    print("| measure | ms per clip |\n|---|---|")
    for name, total in timings.items():
        print(f"| {name} | {1000 * total / n:.0f} |")


def batched_vs_per_clip(folder: Path, n: int, main_voice: str, rounds: int) -> None:
    """The audio measures as transcribe's default backend calls them today (one clip at a time) against
    batched calls over the same clips: DNSMOS (``dnsmos_many``) and the speaker embedding; interleaved."""
    from harness import Comparison, load_line
    from voicelab import quality

    audios, _ = _clips(folder, n, main_voice, main_voice)
    quality.dnsmos_many(audios[:2], 16_000)
    quality.speaker_embeddings(audios[:2], 16_000)
    print(load_line("before"))
    for what, one, many in (
        (
            "DNSMOS",
            lambda: [quality.dnsmos(a, 16_000) for a in audios],
            lambda: quality.dnsmos_many(audios, 16_000),
        ),
        (
            "speaker embedding",
            lambda: [quality.speaker_embeddings([a], 16_000) for a in audios],
            lambda: quality.speaker_embeddings(audios, 16_000),
        ),
    ):
        cmp = Comparison(f"{what}, one clip per call", f"{what}, {n} clips per call")
        cmp.run(rounds, lambda one=one: timed_ms(one, n), lambda many=many: timed_ms(many, n))
        print(cmp.report("ms per clip"))
    print(load_line("after"))


def timed_ms(fn, n: int) -> float:
    start = time.perf_counter()
    fn()
    return 1000 * (time.perf_counter() - start) / n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", type=int, default=20, help="clips per mix (a multiple of 5 keeps 4:1)")
    parser.add_argument("--main", default="en-us", help="the dataset's voice (espeak-ng name)")
    parser.add_argument("--other", nargs="+", default=["en-us+f3", "en-gb-x-rp"], help="other voices")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: fair on a shared machine)")
    parser.add_argument(
        "--batched", type=int, default=0, help="only the per-clip vs batched comparison, this many rounds"
    )
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.batched:
            batched_vs_per_clip(folder, args.clips, args.main, args.batched)
            return 0
        print(
            "| mix | other speaker? P / R | any speaker flag P / R | main voice similarity "
            "| other voice similarity | other voice lowest |"
        )
        print("|---|---|---|---|---|---|")
        for other in args.other:
            speaker_flag(folder, args.clips, args.main, other)
        print("\n| clip | SIG | BAK | OVRL |\n|---|---|---|---|")
        dnsmos_and_timing(folder, args.clips, args.main)
    return 0


if __name__ == "__main__":
    sys.exit(main())
