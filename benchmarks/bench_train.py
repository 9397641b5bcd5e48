"""train-lora speed, measured side by side in one run (random-weight models, offline).

  .venv/bin/python benchmarks/bench_train.py [--clips 8] [--rerun-clips 64] [--examples 64] [--device cpu]

1. SNAC encoding (real snac_24khz size): batched (sorted by length, --batch-size per call) vs one clip per
   call, and the share of codes the two agree on.
2. The whole encode phase of train-lora (what the user waits for before training starts: read the clips,
   fingerprint SNAC's checkpoint files, look in the cache, load SNAC and encode only on a miss), first run
   vs rerun with every clip cached: --rerun-clips clips, --rounds rounds interleaved (order flipped each
   round), median and min-max.
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

from harness import Comparison, load_line, machine_line, median_range
from voicelab import dataset, models, orpheus, testing
from voicelab.audio import write_wav
from voicelab.cli.common import HelpFormatter
from voicelab.training import build, snac_codec

BATCH_SIZE = 8
CLIP_SECONDS = (2.0, 4.0)  # prepared clips are 3-13 s; shorter by default so the run stays minutes on CPU
RERUN_CLIPS = 64
ROUNDS = 3
SR = orpheus.SAMPLE_RATE
REPEATS = 3  # best-of for the short bound measurements (and for [1] on a GPU, where one pass is short)
EXAMPLE_SECONDS = (1.0, 4.0)  # training sequences of ~100-350 tokens on the tiny model


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def bench_snac(
    work: Path,
    n_clips: int,
    rng,
    *,
    device: str,
    batch_size: int,
    clip_seconds: tuple[float, float],
    rounds: int = ROUNDS,
) -> None:
    snac = models.load_snac(str(testing.build_tiny_snac(work / "snac", real_size=True)), device)
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
    single, batch = one_at_a_time(), batched()
    total = sum(a.size for a in single)
    equal = sum(int((a == b).sum()) for a, b in zip(single, batch, strict=True))
    print(f"[1] SNAC encode on {device}, real-size config, {n_clips} clips, {audio_s:.1f} s of audio")
    print(f"    {load_line('before')}")
    cmp = Comparison("one clip per call", f"batched ({batch_size}/call)")
    cmp.run(rounds, lambda: timed(one_at_a_time)[0], lambda: timed(batched)[0])
    print(f"    {load_line('after')}")
    print(cmp.report("s"))
    print(f"    codes equal, batched vs one per call: {equal}/{total} = {equal / total:.5f}")
    bench_snac_bound(snac, clips, device, batch_size)


def bench_rerun(
    work: Path, n_clips: int, rounds: int, *, device: str, clip_seconds: tuple[float, float], seed: int
) -> None:
    """The whole encode phase of train-lora (``build.prepare_examples``: read the clips, fingerprint the
    codec, look in the cache, load SNAC and encode what is missing, build the sequences), first run
    (empty cache) vs rerun (every clip cached), interleaved, the order flipped every round."""
    snac_dir = testing.build_tiny_snac(work / "snac-rerun", real_size=True)
    tokenizer = testing.build_tiny_tokenizer(work / "tokenizer")
    data = work / "rerun-data"
    rng = np.random.default_rng(seed)
    rows = []
    for i, seconds in enumerate(rng.uniform(*clip_seconds, n_clips)):
        write_wav(data / f"c{i:03d}.wav", testing.speech_like_noise([(seconds, 0.0)], SR, seed=i)[:, 0], SR)
        rows.append(f"c{i:03d},Sentence number {i}.")
    (data / dataset.TRANSCRIPT_FILE).write_text("\n".join([",".join(dataset.TRANSCRIPT_HEADER), *rows, ""]))
    models.load_snac(str(snac_dir), device)  # imports and the page cache warm, as on a user's machine

    def phase(cache_dir: Path):
        request = build.TrainRequest(
            name="bench", dataset_dir=data, snac_model=str(snac_dir), snac_device=device, cache_dir=cache_dir
        )
        return timed(lambda: build.prepare_examples(request, tokenizer, progress=False))

    load_before = load_line("before")
    first, rerun, filled = [], [], None
    for r in range(rounds):
        for which in ("first", "rerun") if r % 2 == 0 else ("rerun", "first"):
            if which == "first":
                filled = work / f"cache-{r}"
                t, prepared = phase(filled)
                assert prepared.stats["snac_encoded"] == n_clips
                first.append(t)
            else:
                t, prepared = phase(filled)
                assert prepared.stats["snac_from_cache"] == n_clips
                rerun.append(t)
    ratios = [f / r for f, r in zip(first, rerun, strict=True)]
    print(
        f"[2] train-lora encode phase (prepare_examples: read + fingerprint + cache + SNAC), {n_clips} clips "
        f"of {clip_seconds[0]:g}-{clip_seconds[1]:g} s, real-size SNAC on {device}, {rounds} rounds interleaved"
    )
    print(f"    first run (empty cache) : {_spread(first, 's')}")
    print(f"    rerun (all cached)      : {_spread(rerun, 's')}")
    print(f"    speed-up                : {_spread(ratios, 'x')}")
    print(f"    {load_before}; {load_line('after')}")


def _spread(values: list[float], unit: str) -> str:
    """``median (min-max)`` of per-round values."""
    return f"{median_range(values)} {unit}"


def bench_grouping(work: Path, n_examples: int, rng, rounds: int = ROUNDS) -> None:
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

    def run(grouped: bool) -> float:
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
        lora = LoraSettings(rank=8, alpha=16)
        checkpoints = work / f"ckpt-{'grouped' if grouped else 'random'}"
        seconds, _ = timed(
            lambda: train_lora(
                model,
                examples,
                settings,
                lora,
                base_model=str(base),
                precision="fp32",
                checkpoint_dir=checkpoints,
            )
        )
        return {"tokens_per_s": real_tokens / seconds, "s": seconds}

    print(f"    {load_line('before')}")
    cmp = Comparison("random batches", "length-grouped").run(rounds, lambda: run(False), lambda: run(True))
    print(f"    {load_line('after')}")
    print(cmp.report("real tokens/s", "tokens_per_s", higher_is_better=True))


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
    parser.add_argument(
        "--rerun-clips", type=int, default=RERUN_CLIPS, help="clips for the encode-phase rerun benchmark [2]"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=ROUNDS,
        help="interleaved rounds (A/B order flipped each round) of [1], [2], [3]",
    )
    parser.add_argument("--only", choices=["snac", "rerun", "grouping"], help="run one part")
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
    print(machine_line())
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
                rounds=args.rounds,
            )
        if args.only in (None, "rerun"):
            bench_rerun(
                Path(tmp),
                args.rerun_clips,
                args.rounds,
                device=args.device,
                clip_seconds=tuple(args.clip_seconds),
                seed=args.seed,
            )
        if args.only in (None, "grouping"):
            bench_grouping(Path(tmp), args.examples, rng, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
