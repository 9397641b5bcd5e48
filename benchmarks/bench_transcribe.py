"""Benchmark the transcribe step's choices on this machine, offline.

1. Audio loading: whisper's per-clip ffmpeg subprocess (what ``whisper.transcribe(path)`` does) versus
   decoding in-process with ``voicelab.audio.read_audio(path, 16000)`` (what the transcribe step does).
2. Decoding: openai-whisper one clip at a time versus faster-whisper batched, on tiny random models
   (2 layers, width 64). Random weights decode to the token limit on every clip, so these numbers
   measure per-call overhead and batching, not real-model speed.

    python benchmarks/bench_transcribe.py --clips 16 [--rounds 3]

Each pair is measured interleaved, order flipped every round (benchmarks/harness.py): median and range.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from harness import MIN_ROUNDS, Comparison, load_line, machine_line

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello there, how are you doing today?",
    "A voice is made of many small sounds put together.",
    "It rained all night, and the streets were still wet in the morning.",
]


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--clips", type=int, default=16, help="number of espeak-ng clips to make")
    parser.add_argument("--batch-size", type=int, default=8, help="faster-whisper batch size")
    parser.add_argument(
        "--threads", type=int, default=1, help="CPU threads per backend (1: fair on a shared machine)"
    )
    parser.add_argument("--skip-decode", action="store_true", help="only benchmark audio loading")
    parser.add_argument("--rounds", type=int, default=MIN_ROUNDS, help="interleaved A/B rounds")
    args = parser.parse_args(argv)

    import whisper

    from voicelab import dataset, testing
    from voicelab import transcribe as tr
    from voicelab.audio import read_audio

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "clips"
        for i in range(args.clips):
            testing.speak([SENTENCES[i % len(SENTENCES)], 0.3], folder / f"clip_{i:03d}.wav")
        clips = dataset.find_clips(folder)
        audio_s = sum(tr.clip_duration_s(c) for c in clips)
        print(machine_line())
        print(f"{len(clips)} clips, {audio_s:.1f} s of 22.05 kHz espeak-ng speech")

        print(load_line("before"))
        load = Comparison("ffmpeg subprocess per clip (whisper.load_audio)", "in-process read_audio")
        load.run(
            args.rounds,
            lambda: _timed(lambda: [whisper.load_audio(str(c)) for c in clips]),
            lambda: _timed(lambda: [read_audio(c, tr.WHISPER_SAMPLE_RATE) for c in clips]),
        )
        print(load_line("after"))
        print(f"load {len(clips)} clips:")
        print(load.report("s"))
        if args.skip_decode:
            return 0

        audios = [read_audio(c, tr.WHISPER_SAMPLE_RATE)[0] for c in clips]
        options = tr.DecodeOptions(language="en", beam_size=1, temperatures=(0.0,))
        testing.build_tiny_whisper(Path(tmp) / "tiny.pt")
        openai_t = tr.load_transcriber(
            "openai-whisper", str(Path(tmp) / "tiny.pt"), device="cpu", options=options
        )
        openai_t.transcribe_batch(audios[:1])  # warm-up
        try:
            import faster_whisper  # noqa: F401
        except ImportError:
            print("faster-whisper not installed: skipping its rows")
            return 0
        from voicelab.testing.whisper_ct2 import build_tiny_faster_whisper

        ct2 = build_tiny_faster_whisper(Path(tmp) / "ct2")

        def faster(batch: int):
            fw = tr.load_transcriber(
                "faster-whisper",
                str(ct2),
                device="cpu",
                options=options,
                batch_size=batch,
                threads=args.threads,
            )
            fw.transcribe_batch(audios[:1])
            # The step hands the transcriber batch_size clips per call; mirror it.
            calls = [audios[i : i + batch] for i in range(0, len(audios), batch)]
            return lambda: _timed(lambda: [fw.transcribe_batch(c) for c in calls])

        one, batched = faster(1), faster(args.batch_size)
        print(load_line("before"))
        decode = Comparison("openai-whisper, one clip at a time", "faster-whisper float32, batch 1")
        decode.run(args.rounds, lambda: _timed(lambda: openai_t.transcribe_batch(audios)), one)
        batching = Comparison(
            "faster-whisper float32, batch 1", f"faster-whisper float32, batch {args.batch_size}"
        )
        batching.run(args.rounds, one, batched)
        print(load_line("after"))
        print(f"decode {len(clips)} clips:")
        print(decode.report("s"))
        print(batching.report("s"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
