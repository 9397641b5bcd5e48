"""prepare-audio --reference: what keeping one voice costs, whole processes as a user runs them.

Input: a 10-minute conversation built by ``voicelab.testing.conversations`` (the character, espeak-ng
``en-us``, alternating with three other voices, interjections, pauses of 0.15-0.6 s between turns), as
44.1 kHz stereo 16-bit WAV, and a 7 s reference recording of the character.

1. A = ``python -m voicelab.cli.prepare_audio IN OUT`` (today's cut by pauses), B = the same with
   ``--reference REF``; interleaved rounds (benchmarks/harness.py). What the selection adds: B - A in CPU
   seconds, scaled to one hour of audio (goal: at most 60 s of CPU per hour).
2. pydub load + ``split_on_silence`` (bench_prepare's baseline) vs B: the wall and CPU ratios (goal >= 20x
   by wall time).
3. Memory: peak RSS of B on the 10-minute file and on a 60-minute one (copies of it).

usage: .venv/bin/python benchmarks/bench_sources.py [--rounds 3] [--minutes 10] [--minutes-long 60]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from bench_prepare import RATE, long_wav, peak_rss, prepare_cmd, pydub_cmd, run_timed
from harness import Comparison, load_line, machine_line, median_range

SECONDS_PER_HOUR = 3600


def conversation_wav(path: Path, minutes: float) -> Path:
    from voicelab.audio import resample
    from voicelab.testing import conversations as cv

    seed, pieces = 0, []
    while sum(len(p) for p in pieces) < minutes * 60 * cv.RATE:
        rec = cv.build_recording(
            cv.conversation_parts(cv.OTHER_VOICES, turns=12, seed=seed), path.with_suffix(f".{seed}.wav")
        )
        pieces.append(sf.read(rec.path, dtype="float32")[0])
        rec.path.unlink()
        seed += 1
    mono = resample(np.concatenate(pieces), cv.RATE, RATE)[: round(minutes * 60 * RATE)]
    sf.write(path, np.stack([mono, mono * 0.8], axis=1), RATE, subtype="PCM_16")
    return path


def reference_wav(path: Path) -> Path:
    from voicelab.testing import conversations as cv

    lines = [
        "This is me, speaking clearly, with nobody else around.",
        "A few sentences are enough for the encoder.",
    ]
    return cv.build_recording([(cv.TARGET_VOICE, lines[0]), 0.4, (cv.TARGET_VOICE, lines[1])], path).path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--minutes-long", type=float, default=60.0, help="memory test file (min); 0 skips")
    parser.add_argument("--no-pydub", action="store_true", help="skip the pydub comparison")
    args = parser.parse_args(argv)
    print(machine_line())
    with tempfile.TemporaryDirectory(prefix="bench_sources_") as tmp:
        tmp = Path(tmp)
        began = time.perf_counter()
        wav = conversation_wav(tmp / "talk.wav", args.minutes)
        ref = reference_wav(tmp / "ref.wav")
        print(
            f"input: {args.minutes:g} min conversation, {RATE} Hz stereo (made in {time.perf_counter() - began:.0f} s)"
        )
        out = tmp / "prepared"
        with_ref = [*prepare_cmd(wav, out), "--reference", str(ref)]
        print(load_line("before"))
        cmp = Comparison("prepare_audio (process)", "prepare_audio --reference (process)")
        cmp.run(args.rounds, lambda: run_timed(prepare_cmd(wav, out), out), lambda: run_timed(with_ref, out))
        print(load_line("after"))
        print(cmp.report("s wall", "wall_s"))
        print(cmp.report("s CPU", "cpu_s"))
        added = [b["cpu_s"] - a["cpu_s"] for a, b in zip(cmp.a, cmp.b, strict=True)]
        per_hour = [x * SECONDS_PER_HOUR / (args.minutes * 60) for x in added]
        print(
            f"selection adds {median_range(added, '.2f')} s CPU per {args.minutes:g} min = "
            f"{median_range(per_hour, '.1f')} s CPU per hour of audio (goal <= 60)"
        )
        if not args.no_pydub:
            print(load_line("before pydub"))
            vs = Comparison("pydub load + split_on_silence (process)", "prepare_audio --reference (process)")
            vs.run(args.rounds, lambda: run_timed(pydub_cmd(wav)), lambda: run_timed(with_ref, out))
            print(load_line("after pydub"))
            print(vs.report("s wall", "wall_s"))
            print(vs.report("s CPU", "cpu_s"))
            print(f"goal: wall-time gain >= 20x; median {median_range(vs.ratios('wall_s'), '.1f')}x")
        if args.minutes_long > 0:
            long = long_wav(wav, tmp / "long.wav", args.minutes_long)
            for minutes, path in ((args.minutes, wav), (args.minutes_long, long)):
                cmd = [*prepare_cmd(path, tmp / "out_rss"), "--reference", str(ref)]
                seconds, rss = peak_rss(cmd, tmp)
                print(
                    f"  --reference, {minutes:5g} min: peak RSS {rss / 2**20:6.0f} MiB, {seconds:6.1f} s wall"
                )
            print(load_line("after memory"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
