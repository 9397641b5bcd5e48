"""prepare-audio speed and memory, whole processes as a user runs them.

1. Speed: the whole ``prepare_audio`` command (``python -m voicelab.cli.prepare_audio IN OUT``, a separate
   process: start-up, decode, resample to 24 kHz, split, normalise, write clips and manifest) against a
   separate process that loads the same file with pydub and runs its ``split_on_silence`` (seek_step=1,
   same threshold and pause length). Input: real speech made with espeak-ng (varied sentences and pauses
   of 0.2-1.5 s), 10 minutes, resampled to 44.1 kHz stereo 16-bit. Interleaved rounds, order flipped each
   round (benchmarks/harness.py). Goal: pydub / prepare_audio >= 20x by wall time.
2. Memory: peak RSS of the command on the 10-minute file and on a 60-minute one (``--minutes-long``).
   Goal: < 1 GB for 60 minutes, and no growth with length.

Inputs are generated into a temporary folder and deleted afterwards (never committed).
usage: .venv/bin/python benchmarks/bench_prepare.py [--rounds 3] [--minutes 10] [--minutes-long 60]
       [--compare-src OLD/src]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from harness import Comparison, ProcessRun, load_line, machine_line, median_range, run_process

REPO = Path(__file__).resolve().parents[1]
RATE = 44100
CHANNELS = 2
THRESHOLD_DB = -40.0
PAUSE_MS = 500
KIB = 1024
RIGHT_CHANNEL_GAIN = 0.8  # a stereo file whose channels differ, as a real recording's do

SUBJECTS = [
    "The old lighthouse keeper",
    "My neighbour",
    "A tired musician",
    "The young engineer",
    "Our captain",
]
VERBS = ["carried", "painted", "forgot", "repaired", "described"]
OBJECTS = [
    "a wooden box full of letters",
    "the bright red bicycle by the gate",
    "seven maps of the northern coast",
    "an umbrella that nobody wanted",
    "the quiet song from last winter",
]
ENDINGS = [
    "before the storm arrived.",
    "and then laughed about it for an hour.",
    "while the kettle was boiling.",
    "because it seemed like the right thing to do.",
    "on a Tuesday, of all days.",
]

PYDUB_SCRIPT = """
import sys
from pydub import AudioSegment
from pydub.silence import split_on_silence
segment = AudioSegment.from_file(sys.argv[1])
chunks = split_on_silence(segment, min_silence_len={pause}, silence_thresh={thresh}, seek_step=1)
print(len(chunks), "chunks")
"""


def speech_wav(path: Path, minutes: float, seed: int = 0) -> Path:
    """``minutes`` of espeak-ng speech (varied sentences, 0.2-1.5 s pauses) as 44.1 kHz stereo 16-bit."""
    import soxr

    from voicelab.testing import speak

    rng = np.random.default_rng(seed)
    parts: list[str | float] = []
    for _ in range(int(minutes * 60 / 2.5)):  # a sentence and a pause take ~3.5 s; trimmed to length below
        sentence = " ".join(rng.choice(words) for words in (SUBJECTS, VERBS, OBJECTS, ENDINGS))
        parts += [sentence, round(float(rng.uniform(0.2, 1.5)), 2)]
    mono_path = speak(parts, path.with_suffix(".espeak.wav"))
    mono, rate = sf.read(mono_path, dtype="float32")
    mono_path.unlink()
    total = round(minutes * 60 * RATE)
    up = soxr.resample(mono, rate, RATE)
    if len(up) < total:
        raise RuntimeError(f"espeak-ng made {len(up) / RATE:.0f} s, fewer than the {minutes:g} min asked for")
    stereo = np.stack([up[:total], up[:total] * RIGHT_CHANNEL_GAIN], axis=1)
    sf.write(path, stereo, RATE, subtype="PCM_16")
    return path


def long_wav(short: Path, path: Path, minutes: float) -> Path:
    """A long file made of copies of the short one, written block by block (the generator stays small)."""
    info = sf.info(short)
    total = round(minutes * 60 * RATE)
    with sf.SoundFile(path, "w", RATE, CHANNELS, subtype="PCM_16") as out:
        written = 0
        while written < total:
            block = sf.read(short, dtype="int16", frames=min(info.frames, total - written))[0]
            out.write(block)
            written += len(block)
    return path


def prepare_cmd(wav: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "voicelab.cli.prepare_audio", str(wav), str(out), "--overwrite"]


def pydub_cmd(wav: Path) -> list[str]:
    return [sys.executable, "-c", PYDUB_SCRIPT.format(pause=PAUSE_MS, thresh=THRESHOLD_DB), str(wav)]


def run_timed(cmd: list[str], clean: Path | None = None) -> dict[str, float]:
    if clean is not None:
        shutil.rmtree(clean, ignore_errors=True)
    result: ProcessRun = run_process(cmd)
    return {"wall_s": result.wall_s, "cpu_s": result.cpu_s}


def peak_rss(cmd: list[str], tmp: Path) -> tuple[float, int]:
    """(seconds, peak RSS bytes) of ``cmd`` by GNU time: ``wait4``'s ru_maxrss of a direct child also
    counts the pages it shared with this benchmark process when it was forked."""
    gnu_time = shutil.which("time") or "/usr/bin/time"
    time_file = tmp / "maxrss.txt"
    start = time.perf_counter()
    run_process([gnu_time, "-o", str(time_file), "-f", "%M", *cmd])
    return time.perf_counter() - start, int(time_file.read_text().split()[-1]) * KIB


def compare_sources(old_src: Path, wav: Path, tmp: Path, rounds: int) -> None:
    """The command from another source tree (e.g. ``git archive`` of an older commit) vs this one."""
    env_old = {**os.environ, "PYTHONPATH": str(old_src.resolve())}
    env_new = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    out_old, out_new = tmp / "prepared_old", tmp / "prepared_new"
    print(f"prepare_audio from {old_src} (A) vs this tree (B), same input")
    print(load_line("before"))
    cmp = Comparison(f"prepare_audio ({old_src})", "prepare_audio (this tree)")

    def one(env: dict, out: Path):
        shutil.rmtree(out, ignore_errors=True)
        result = run_process(prepare_cmd(wav, out), env=env)
        return {"wall_s": result.wall_s, "cpu_s": result.cpu_s}

    cmp.run(rounds, lambda: one(env_old, out_old), lambda: one(env_new, out_new))
    print(load_line("after"))
    print(cmp.report("s wall", "wall_s"))
    print(cmp.report("s CPU", "cpu_s"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (>= 3)")
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the speed test file (min)")
    parser.add_argument("--minutes-long", type=float, default=60.0, help="memory test file (min); 0 skips")
    parser.add_argument(
        "--compare-src",
        type=Path,
        help="also time the command from this src/ folder (an older tree) vs this one",
    )
    args = parser.parse_args(argv)

    print(machine_line())
    with tempfile.TemporaryDirectory(prefix="bench_prepare_") as tmp:
        tmp = Path(tmp)
        gen = time.perf_counter()
        short = speech_wav(tmp / "speech.wav", args.minutes, seed=1)
        print(
            f"input: {args.minutes:g} min espeak-ng speech, {RATE} Hz stereo 16-bit WAV "
            f"({short.stat().st_size / 2**20:.0f} MiB, made in {time.perf_counter() - gen:.0f} s)"
        )
        print(load_line("before"))
        out = tmp / "prepared"
        cmp = Comparison("pydub load + split_on_silence (process)", "voicelab prepare_audio (process)")
        cmp.run(
            args.rounds, lambda: run_timed(pydub_cmd(short)), lambda: run_timed(prepare_cmd(short, out), out)
        )
        print(load_line("after"))
        print("by wall time:")
        print(cmp.report("s", "wall_s"))
        print("by CPU time (user+sys of the process):")
        print(cmp.report("s", "cpu_s"))
        print(f"goal: wall-time gain >= 20x; median {median_range(cmp.ratios('wall_s'), '.1f')}x")
        summary = run_process(prepare_cmd(short, out)).stdout.splitlines()
        print("  prepare_audio:", next((line.strip() for line in summary if "clips written" in line), "?"))
        if args.compare_src:
            compare_sources(args.compare_src, short, tmp, args.rounds)

        if args.minutes_long > 0:
            print("memory: peak RSS of the prepare_audio process")
            long = long_wav(short, tmp / "long.wav", args.minutes_long)
            for minutes, path in ((args.minutes, short), (args.minutes_long, long)):
                seconds, rss = peak_rss(prepare_cmd(path, tmp / "out_rss"), tmp)
                print(
                    f"  {minutes:5g} min: peak RSS {rss / 2**20:6.0f} MiB, {seconds:6.1f} s wall "
                    f"({minutes * 60 / seconds:.0f}x real time)"
                )
            print(load_line("after memory"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
