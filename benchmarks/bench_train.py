"""train-lora speed, measured side by side in one run (random-weight models, offline).

  .venv/bin/python benchmarks/bench_train.py [--clips 8] [--examples 64] [--device cpu]

1. SNAC encoding (real snac_24khz size): batched (sorted by length, --batch-size per call) vs one clip per
   call, and the share of codes the two agree on.
2. The encode phase (read WAV, hash, encode, write cache) first run vs cached rerun.
3. LoRA training tokens/s on the tiny Orpheus at batch size 8: length-grouped batches vs random batches.

On a GPU (the batching goal is a GPU goal; on CPU a batch cannot win, see docs/benchmarks.md):

  python benchmarks/bench_train.py --only snac --device cuda --clips 64 --clip-seconds 3 13
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from voicelab import orpheus, testing
from voicelab.audio import write_wav
from voicelab.cli.common import HelpFormatter
from voicelab.training import dataset as ds
from voicelab.training import snac_codec

BATCH_SIZE = 8
CLIP_SECONDS = (2.0, 4.0)  # prepared clips are 3-13 s; shorter by default so the run stays minutes on CPU
REPEATS = 3  # best-of for the short bound measurements (and for [1] on a GPU, where one pass is short)
EXAMPLE_SECONDS = (1.0, 4.0)  # training sequences of ~100-350 tokens on the tiny model


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def bench_snac(
    work: Path, n_clips: int, rng, *, device: str, batch_size: int, clip_seconds: tuple[float, float]
) -> None:
    snac = snac_codec.load_snac(str(testing.build_tiny_snac(work / "snac", real_size=True)), device)
    seconds = rng.uniform(*clip_seconds, n_clips)
    clips = [
        testing.speech_like_noise([(s, 0.0)], orpheus.SAMPLE_RATE, seed=i)[:, 0]
        for i, s in enumerate(seconds)
    ]
    audio_s = float(seconds.sum())
    order = sorted(range(n_clips), key=lambda i: len(clips[i]))

    def one_at_a_time():
        return [snac_codec.encode_batch(snac, [c], device)[0] for c in clips]

    def batched():
        out = {}
        for b in range(0, n_clips, batch_size):
            idx = order[b : b + batch_size]
            out.update(zip(idx, snac_codec.encode_batch(snac, [clips[i] for i in idx], device), strict=True))
        return [out[i] for i in range(n_clips)]

    # warm-up: allocator, kernels, and on a GPU each shape's first launch
    snac_codec.encode_batch(snac, clips[:1], device)
    snac_codec.encode_batch(snac, [clips[i] for i in order[:batch_size]], device)
    # encode_batch returns numpy codes, so every call ends synchronised with the device
    repeats = 1 if device == "cpu" else REPEATS  # a CPU pass takes seconds: one each is enough there
    t_single = t_batch = float("inf")
    for _ in range(repeats):  # interleaved, best of each
        t, single = timed(one_at_a_time)
        t_single = min(t_single, t)
        t, batch = timed(batched)
        t_batch = min(t_batch, t)
    total = sum(a.size for a in single)
    equal = sum(int((a == b).sum()) for a, b in zip(single, batch, strict=True))
    print(f"[1] SNAC encode on {device}, real-size config, {n_clips} clips, {audio_s:.1f} s of audio")
    print(f"    one clip per call : {t_single:7.3f} s  ({audio_s / t_single:7.1f} x real time)")
    print(f"    batched ({batch_size}/call)   : {t_batch:7.3f} s  ({audio_s / t_batch:7.1f} x real time)")
    print(
        f"    speed-up          : {t_single / t_batch:7.2f} x   "
        f"(codes equal: {equal}/{total} = {equal / total:.5f})"
    )
    bench_snac_bound(snac, clips, device, batch_size)

    data = work / "data"
    for i, clip in enumerate(clips):
        write_wav(data / f"c{i}.wav", clip, orpheus.SAMPLE_RATE)
    items = [
        (f"c{i}", lambda i=i: ds.load_clip_audio(ds.Clip(f"c{i}", data / f"c{i}.wav", "t")))
        for i in range(n_clips)
    ]
    fingerprint = snac_codec.model_fingerprint("bench", snac)
    cache = snac_codec.CodeCache(work / "cache")

    def phase():
        return snac_codec.encode_clips(
            items, snac, fingerprint, cache=cache, device=device, batch_size=batch_size, progress=False
        )

    t_first, (_, s1) = timed(phase)
    t_rerun, (_, s2) = timed(phase)
    print(f"[2] encode phase (read WAV + hash + encode/cache), {n_clips} clips")
    print(f"    first run         : {t_first:7.3f} s  ({s1.encoded} encoded)")
    print(f"    cached rerun      : {t_rerun:7.3f} s  ({s2.from_cache} from cache)")
    print(f"    speed-up          : {t_first / t_rerun:7.1f} x")


def bench_grouping(work: Path, n_examples: int, rng) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from voicelab.training.trainer import LoraSettings, TrainSettings, train_lora

    base = testing.build_tiny_orpheus(work / "orpheus")
    tokenizer = AutoTokenizer.from_pretrained(base)
    examples = []
    for i in range(n_examples):
        n_frames = int(rng.uniform(*EXAMPLE_SECONDS) * orpheus.SAMPLE_RATE / orpheus.SAMPLES_PER_FRAME)
        frames = rng.integers(0, orpheus.CODEBOOK_SIZE, (n_frames, orpheus.CODES_PER_FRAME))
        examples.append(
            orpheus.training_example(tokenizer, f"Sentence {i}.", orpheus.frames_to_tokens(frames))
        )
    real_tokens = sum(len(e) for e in examples)
    print(
        f"[3] LoRA training, tiny Orpheus, batch {BATCH_SIZE}, {n_examples} sequences of "
        f"{min(map(len, examples))}-{max(map(len, examples))} tokens, 1 epoch"
    )
    results = {}
    for label, grouped in (("random batches", False), ("length-grouped", True)):
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
        settings = TrainSettings(
            epochs=1,
            batch_size=BATCH_SIZE,
            learning_rate=1e-4,
            logging_steps=1000,
            save_steps=10_000,
            group_by_length=grouped,
            device="cpu",
            progress=False,
        )
        checkpoints = work / f"ckpt-{label.replace(' ', '-')}"
        t, _ = timed(
            lambda model=model, settings=settings, checkpoints=checkpoints: train_lora(
                model,
                examples,
                settings,
                LoraSettings(rank=8, alpha=16),
                base_model=str(base),
                precision="fp32",
                checkpoint_dir=checkpoints,
            )
        )
        results[label] = t
        print(f"    {label:15s}   : {t:7.2f} s  ({real_tokens / t:8.0f} real tokens/s)")
    print(f"    speed-up          : {results['random batches'] / results['length-grouped']:7.2f} x")


def bench_snac_bound(snac, clips, device: str, batch_size: int) -> None:
    """What batching could save at most: the fixed cost per call, and a batch with no padding at all."""
    tiny = [np.zeros(orpheus.SAMPLES_PER_FRAME, dtype=np.float32)]
    same_length = [clips[0]] * batch_size  # equal lengths: the batch computes no padding
    audio_s = len(clips[0]) / orpheus.SAMPLE_RATE
    t_tiny = min(timed(lambda: snac_codec.encode_batch(snac, tiny, device))[0] for _ in range(REPEATS))
    t_one = t_eight = float("inf")
    for _ in range(REPEATS):  # interleaved, best of each: the machine is shared
        t_one = min(t_one, timed(lambda: snac_codec.encode_batch(snac, same_length[:1], device))[0])
        t_eight = min(t_eight, timed(lambda: snac_codec.encode_batch(snac, same_length, device))[0])
    print(f"    bound: one call on 1 frame (fixed cost + tail) : {t_tiny * 1000:7.1f} ms")
    print(f"    bound: one call on one {audio_s:.2f} s clip          : {t_one * 1000:7.1f} ms")
    print(
        f"    bound: {batch_size} equal clips, 1 call vs {batch_size} calls     : {t_eight:7.3f} s vs "
        f"{batch_size * t_one:6.3f} s = {batch_size * t_one / t_eight:4.2f} x (no padding at all)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--clips", type=int, default=8, help="clips for the SNAC benchmarks")
    parser.add_argument(
        "--examples", type=int, default=64, help="training sequences for the grouping benchmark"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--only", choices=["snac", "grouping"], help="run one part")
    parser.add_argument("--device", default="cpu", help="torch device for SNAC encoding ([1], [2])")
    parser.add_argument(
        "--batch-size", type=int, default=BATCH_SIZE, help="clips per batched SNAC call ([1], [2])"
    )
    parser.add_argument(
        "--clip-seconds",
        type=float,
        nargs=2,
        default=CLIP_SECONDS,
        metavar=("MIN", "MAX"),
        help="clip lengths for [1] and [2], drawn uniformly (prepared clips are 3-13 s)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    import torch

    gpu = torch.cuda.get_device_name() if args.device.startswith("cuda") else "no GPU"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {gpu}")
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "snac"):
            bench_snac(
                Path(tmp),
                args.clips,
                rng,
                device=args.device,
                batch_size=args.batch_size,
                clip_seconds=tuple(args.clip_seconds),
            )
        if args.only in (None, "grouping"):
            bench_grouping(Path(tmp), args.examples, rng)
    return 0


if __name__ == "__main__":
    sys.exit(main())
