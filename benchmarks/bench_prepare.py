"""prepare-audio speed and memory, measured side by side in one run.

1. Speed: the WHOLE prepare (decode, resample, split, normalise, write) of a generated 10-minute 44.1 kHz
   stereo speech-like WAV, against pydub's ``split_on_silence`` alone (seek_step=1, same threshold and
   pause length) on the same file, already loaded. Goal: ratio >= 20.
2. Memory: peak RSS of ``scripts/prepare_audio.py`` in a child process on a 10-minute and a 60-minute
   44.1 kHz stereo WAV (generated block by block). Goal: < 1 GB for 60 minutes, and no growth with length.

Inputs are generated into a temporary folder and deleted afterwards (never committed).
usage: .venv/bin/python benchmarks/bench_prepare.py [--minutes-long 60] [--skip-pydub]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
RATE = 44100
CHANNELS = 2
THRESHOLD_DB = -40.0
PAUSE_MS = 500
CHUNK_S = 60  # generate long files a minute at a time so the generator's own memory stays small
KIB = 1024


def speech_like_wav(path: Path, minutes: float, seed: int = 0) -> Path:
    """A speech-like recording: utterances of 0.5-9 s separated by 0.2-1.5 s pauses, written in chunks."""
    from voicelab.testing import speech_like_noise

    rng = np.random.default_rng(seed)
    total = round(minutes * 60 * RATE)
    with sf.SoundFile(path, "w", RATE, CHANNELS, subtype="PCM_16") as f:
        written = 0
        while written < total:
            segments, length = [], 0.0
            while length < CHUNK_S:
                speech, pause = rng.uniform(0.5, 9.0), rng.uniform(0.2, 1.5)
                segments.append((speech, pause))
                length += speech + pause
            block = speech_like_noise(segments, RATE, channels=CHANNELS, seed=int(rng.integers(1 << 31)))
            block = block[: total - written]
            f.write(block)
            written += len(block)
    return path


def time_pydub(path: Path) -> tuple[float, int]:
    from pydub import AudioSegment
    from pydub.silence import split_on_silence

    segment = AudioSegment.from_wav(path)
    start = time.perf_counter()
    chunks = split_on_silence(segment, min_silence_len=PAUSE_MS, silence_thresh=THRESHOLD_DB, seek_step=1)
    return time.perf_counter() - start, len(chunks)


def time_prepare(path: Path, out: Path) -> tuple[float, int]:
    from voicelab.prepare import PrepareSettings, prepare_dataset

    settings = PrepareSettings(silence_threshold=THRESHOLD_DB, silence_min_len_ms=PAUSE_MS)
    start = time.perf_counter()
    report = prepare_dataset(path, out, settings, progress=False)
    return time.perf_counter() - start, len(report.new_records)


def child_peak_rss(path: Path, out: Path, tmp: Path) -> tuple[float, int, str]:
    """Run the script as a user would, in a child; returns (seconds, peak RSS bytes, clips summary line).

    Measured by ``/usr/bin/time -f %M`` where it exists: ``wait4``'s ru_maxrss of a direct child also
    counts the pages it shared with this (large) benchmark process when it was forked.
    """
    script = [sys.executable, str(REPO / "scripts" / "prepare_audio.py"), str(path), str(out)]
    time_file = tmp / "maxrss.txt"
    gnu_time = shutil.which("time") or ("/usr/bin/time" if Path("/usr/bin/time").exists() else None)
    cmd = [gnu_time, "-o", str(time_file), "-f", "%M", *script] if gnu_time else script
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    stdout = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"prepare_audio.py failed on {path} (exit {code}):\n{stdout}")
    max_kib = int(time_file.read_text().split()[-1]) if gnu_time else usage.ru_maxrss  # KiB on Linux
    clips_line = next((line.strip() for line in stdout.splitlines() if "clips written" in line), "")
    return elapsed, max_kib * KIB, clips_line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--minutes-short", type=float, default=10.0, help="length of the speed test file (min)"
    )
    parser.add_argument(
        "--minutes-long", type=float, default=60.0, help="length of the memory test file (min)"
    )
    parser.add_argument("--skip-pydub", action="store_true", help="skip the (slow) pydub baseline")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench_prepare_") as tmp:
        tmp = Path(tmp)
        short = speech_like_wav(tmp / "short.wav", args.minutes_short, seed=1)
        print(
            f"speed: {args.minutes_short:g} min, {RATE} Hz stereo 16-bit WAV ({short.stat().st_size / 2**20:.0f} MiB)"
        )
        ours_s, ours_clips = time_prepare(short, tmp / "out_speed")
        print(
            f"  voicelab prepare (decode+resample+split+normalise+write): {ours_s:7.2f} s, {ours_clips} clips"
        )
        if not args.skip_pydub:
            pydub_s, pydub_chunks = time_pydub(short)
            print(
                f"  pydub split_on_silence(seek_step=1) alone:                {pydub_s:7.2f} s, {pydub_chunks} chunks"
            )
            print(f"  ratio pydub / voicelab: {pydub_s / ours_s:.1f}x (goal >= 20x)")

        print("memory: peak RSS of scripts/prepare_audio.py in a child process")
        for minutes, name in ((args.minutes_short, "short.wav"), (args.minutes_long, "long.wav")):
            path = tmp / name
            if not path.exists():
                gen = time.perf_counter()
                speech_like_wav(path, minutes, seed=2)
                print(
                    f"  (generated {minutes:g} min WAV, {path.stat().st_size / 2**20:.0f} MiB, "
                    f"in {time.perf_counter() - gen:.0f} s)"
                )
            seconds, rss, clips = child_peak_rss(path, tmp / f"out_{name}", tmp)
            print(
                f"  {minutes:5g} min: peak RSS {rss / 2**20:6.0f} MiB, {seconds:6.1f} s wall "
                f"({minutes * 60 / seconds:.0f}x real time); {clips}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
