"""What transcribe's audio measures (speaker print, DNSMOS, speech time) add to a run's wall time.

A = ``transcribe_clips`` without the measures (``--no-quality``), B = with them: they run on worker
threads while Whisper transcribes (``transcribe.signals.Measurer``). With ``--after`` a third side, C,
reproduces the path before that: each batch measured after Whisper, on the same thread. Added wall per
clip = (B - A) / clips, per interleaved round (benchmarks/harness.py). Goal: at most 0.1 s per 5 s clip.

What stands in for a user's Whisper: openai-whisper of a real size (``--size base``: 74 M parameters,
the smallest a user would train from; ``small``: 244 M) with random weights, built here, decoding one
30 s window per clip with the CLI's beam of 5 and a bounded ``--tokens`` (24: about what 5 s of speech
says, with timestamps off so a random model cannot make it seek window after window), no temperature
fallback. So Whisper's cost per clip is a real model's encoder pass and a realistic decode; its words are
garbage, which the measures do not read. Whisper gets ``--threads`` torch threads (1: the measures then
have the other core of a 2-core machine).

Clips: ``--clips`` espeak-ng sentences of about 5 s, 24 kHz 16-bit WAV as prepare-audio writes them.
Models are loaded before the rounds (a run loads them once); the rounds time the per-clip work.

usage: .venv/bin/python benchmarks/bench_measures.py [--clips 6] [--rounds 3] [--size base] [--after]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from harness import MIN_ROUNDS, Comparison, load_line, machine_line, median_range

SENTENCES = [
    "The quick brown fox jumps over the lazy dog near the quiet river bank today.",
    "She sells sea shells by the sea shore every single summer morning, rain or shine.",
    "I would like a cup of hot coffee and a slice of lemon cake, if you please.",
    "Tomorrow we travel north to see the high mountains covered in fresh white snow.",
]
CLIP_RATE = 24_000
SIZES = {
    "base": {"n_audio_state": 512, "n_audio_head": 8, "n_audio_layer": 6},
    "small": {"n_audio_state": 768, "n_audio_head": 12, "n_audio_layer": 12},
}


def random_whisper(size: str):
    """openai-whisper of a real size with random weights (the same compute as the trained model)."""
    import torch
    from whisper.model import ModelDimensions, Whisper

    torch.manual_seed(0)
    shape = SIZES[size]
    dims = ModelDimensions(
        n_mels=80,
        n_audio_ctx=1500,
        n_vocab=51865,
        n_text_ctx=448,
        n_text_state=shape["n_audio_state"],
        n_text_head=shape["n_audio_head"],
        n_text_layer=shape["n_audio_layer"],
        **shape,
    )
    model = Whisper(dims)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.02)
    return model.eval()


def transcriber_class(tokens: int):
    from voicelab import transcribe as tr
    from voicelab.transcribe.backends import DEFAULT_BEST_OF

    class BoundedWhisper(tr.OpenAIWhisperTranscriber):
        """The step's openai-whisper transcriber, each clip decoded to ``tokens`` tokens in one window."""

        def transcribe_batch(self, audios):
            import whisper

            out = []
            for audio in audios:
                result = whisper.transcribe(
                    self.model,
                    audio,
                    language="en",
                    temperature=self.options.temperatures,
                    beam_size=self.options.beam_size,
                    best_of=DEFAULT_BEST_OF,
                    fp16=False,
                    condition_on_previous_text=False,
                    verbose=None,
                    sample_len=tokens,
                    without_timestamps=True,
                )
                out.append(tr.summarize_segments(result["segments"]))
            return out

    return BoundedWhisper


class MeasuredAfter:
    """The path before the measures ran beside Whisper: each batch measured after it, on this thread."""

    def __init__(self, inner):
        self.inner, self.batch_size = inner, inner.batch_size

    def transcribe_batch(self, audios):
        from voicelab.transcribe.signals import measure_quality

        results = self.inner.transcribe_batch(audios)
        measure_quality(audios)
        return results


def make_clips(folder: Path, n: int) -> list[Path]:
    from voicelab import dataset, testing
    from voicelab.audio import read_audio, write_wav

    for i in range(n):
        path = testing.speak([0.2, SENTENCES[i % len(SENTENCES)], 0.2], folder / f"clip_{i:03d}.wav")
        write_wav(path, read_audio(path, CLIP_RATE)[0], CLIP_RATE)  # as prepare-audio writes clips
    return dataset.find_clips(folder)


def one_run(src: Path, work: Path, transcriber, quality: bool) -> dict[str, float]:
    from voicelab import dataset
    from voicelab import transcribe as tr

    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(src, work)
    clips = dataset.find_clips(work)
    plan = tr.plan_resume(clips, work / "transcript.csv", overwrite=False)
    options = tr.QualityOptions(device="cpu", report=False) if quality else None
    began, cpu = time.perf_counter(), time.process_time()
    summary = tr.transcribe_clips(
        clips, work / "transcript.csv", transcriber, plan, progress=False, quality=options
    )
    wall, cpu = time.perf_counter() - began, time.process_time() - cpu
    return {"wall_s": wall, "cpu_s": cpu, "measures_s": summary.quality_s, "waited_s": summary.quality_wait_s}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=MIN_ROUNDS)
    parser.add_argument("--size", choices=sorted(SIZES), default="base")
    parser.add_argument("--tokens", type=int, default=24)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for Whisper")
    parser.add_argument("--after", action="store_true", help="also time the measures taken after Whisper")
    args = parser.parse_args(argv)

    import torch

    from voicelab import transcribe as tr
    from voicelab.transcribe.run import read_16k
    from voicelab.transcribe.signals import measure_quality

    torch.set_num_threads(args.threads)
    print(machine_line())
    with tempfile.TemporaryDirectory(prefix="bench_measures_") as tmp:
        tmp = Path(tmp)
        clips = make_clips(tmp / "clips", args.clips)
        seconds = sum(tr.clip_duration_s(c) for c in clips)
        print(
            f"{len(clips)} clips, {seconds / len(clips):.1f} s each on average; Whisper {args.size}, random weights,"
        )
        print(f"  {args.tokens} tokens per clip, beam {tr.DEFAULT_BEAM_SIZE}, {args.threads} torch thread(s)")
        options = tr.DecodeOptions(language="en", temperatures=(0.0,))
        whisper = transcriber_class(args.tokens)(random_whisper(args.size), "cpu", options)
        measure_quality([read_16k(clips[0])])  # load the speaker encoder and DNSMOS once, as a run does
        plain = lambda: one_run(tmp / "clips", tmp / "work", whisper, quality=False)  # noqa: E731
        sides = [
            ("measures beside Whisper", lambda: one_run(tmp / "clips", tmp / "work", whisper, quality=True))
        ]
        if args.after:
            after = MeasuredAfter(whisper)
            sides.append(
                (
                    "measures after Whisper (the old path)",
                    lambda: one_run(tmp / "clips", tmp / "work", after, False),
                )
            )
        for name, side in sides:
            print(load_line("before"))
            cmp = Comparison("no measures", name)
            cmp.run(args.rounds, plain, side)
            print(load_line("after"))
            print(cmp.report("s wall", "wall_s"))
            added = [(b["wall_s"] - a["wall_s"]) / len(clips) for a, b in zip(cmp.a, cmp.b, strict=True)]
            whisper_per_clip = [a["wall_s"] / len(clips) for a in cmp.a]
            print(f"  Whisper alone: {median_range(whisper_per_clip, '.2f')} s wall per clip")
            print(f"  {name}: adds {median_range(added, '.3f')} s wall per clip (goal <= 0.1)")
            cpu = [(b["cpu_s"] - a["cpu_s"]) / len(clips) for a, b in zip(cmp.a, cmp.b, strict=True)]
            print(f"  and {median_range(cpu, '.3f')} s of CPU per clip (all threads of the process)")
            if cmp.b[0]["measures_s"]:
                busy = [b["measures_s"] / len(clips) for b in cmp.b]
                waited = [b["waited_s"] / len(clips) for b in cmp.b]
                print(
                    f"  measuring threads busy {median_range(busy, '.2f')} s per clip; "
                    f"Whisper's loop waited {median_range(waited, '.3f')} s per clip"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
