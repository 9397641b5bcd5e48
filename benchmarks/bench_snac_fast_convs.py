"""Interleaved A/B of the fast decoder convolutions (``voicelab.snac_inference.use_fast_decoder_convs``).

Old = ``prepare_for_inference(model, fast_decoder=False)``; new = the default. Same process, same inputs,
A and B alternated, order flipped every round (benchmarks/harness.py): medians and ranges reported. Real snac_24khz configuration, random weights.

* ``decoder``: one ``model.decoder`` pass on latents of (batch, frames) windows; wall time with the default
  threads, or CPU time with ``--threads 1`` (less sensitive to other processes);
* ``streams``: unpaced aggregate audio s / wall s of 16 ``StreamingSnacDecoder`` streams;
* ``onnx``: today's decoder pass against the same decoder exported to ONNX and run by onnxruntime (an
  alternative measured and not adopted, see docs/benchmarks.md; the export needs ``pip install onnx``);
* ``compile``: today's decoder pass against ``torch.compile`` of it on one static shape (also not adopted).

Usage: ``python benchmarks/bench_snac_fast_convs.py [decoder|streams|onnx|compile] [--rounds 5] [--threads N]``
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from harness import MIN_ROUNDS, Comparison, load_line, machine_line

WINDOWS = [(1, 6), (1, 12), (1, 36), (4, 8), (2, 16)]  # (batch, frames): what the streaming decoder runs
SAMPLES_PER_LATENT_STEP = 512  # 2048 samples per frame / 4 latent steps per frame


def _clock(threads: int | None):
    """CPU time at one thread (less sensitive to other processes), wall time otherwise."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    return time.process_time if torch.get_num_threads() == 1 else time.perf_counter


def _rate(fn, z, clock, reps: int = 2):
    def run() -> float:
        start = clock()
        for _ in range(reps):
            fn(z)
        return reps * z.shape[0] * z.shape[2] * SAMPLES_PER_LATENT_STEP / 24000 / (clock() - start)

    return run


def _ab_windows(name_a: str, fn_a, name_b: str, fn_b, latent_dim: int, rounds: int, clock) -> None:
    import torch

    gen = torch.Generator().manual_seed(0)
    print(load_line("before"))
    with torch.inference_mode():
        for batch, frames in WINDOWS:
            z = torch.randn(batch, latent_dim, 4 * frames, generator=gen)
            diff = float(np.abs(np.asarray(fn_a(z)) - np.asarray(fn_b(z))).max())
            cmp = Comparison(name_a, name_b).run(
                rounds, _rate(fn_a, z, clock), _rate(fn_b, z, clock), verbose=False
            )
            print(f"batch {batch} x {frames:2d} frames (max |diff| {diff:.1e}, noise off):")
            print(cmp.report("audio s/s", higher_is_better=True))
    print(load_line("after"))


def _quiet(model):
    """Zero the NoiseBlocks' gain so that two decodes of the same latents compare sample by sample."""
    import torch
    from snac.layers import NoiseBlock

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, NoiseBlock):
                module.linear.weight.zero_()
    return model


def decoder_ab(model_dir, rounds: int, threads: int | None) -> None:
    import torch
    from snac import SNAC

    from voicelab.snac_inference import prepare_for_inference

    clock = _clock(threads)
    old = _quiet(prepare_for_inference(SNAC.from_pretrained(str(model_dir)).eval(), fast_decoder=False))
    new = _quiet(prepare_for_inference(SNAC.from_pretrained(str(model_dir)).eval()))
    print(
        f"decoder pass, stock convs (A) vs fast convs (B), torch threads={torch.get_num_threads()}, {clock.__name__}"
    )
    _ab_windows(
        "stock convolutions", old.decoder, "fast convolutions", new.decoder, old.latent_dim, rounds, clock
    )


def onnx_ab(model_dir, rounds: int, threads: int | None, tmp: Path) -> None:
    """Today's path vs the decoder exported to ONNX and run by onnxruntime (needs the onnx package)."""
    import onnxruntime as ort
    import torch
    from snac import SNAC

    from voicelab.snac_inference import bake_weight_norm, prepare_for_inference

    clock = _clock(threads)
    ours = _quiet(prepare_for_inference(SNAC.from_pretrained(str(model_dir)).eval()))
    stock = SNAC.from_pretrained(str(model_dir)).eval()
    bake_weight_norm(stock)  # before _quiet: with weight norm in place, .weight is recomputed on every call
    _quiet(stock)
    path = tmp / "snac_decoder.onnx"
    start = time.perf_counter()
    torch.onnx.export(
        stock.decoder,
        (torch.randn(1, stock.latent_dim, 32),),
        str(path),
        dynamo=False,
        input_names=["z"],
        output_names=["audio"],
        dynamic_axes={"z": {0: "batch", 2: "steps"}, "audio": {0: "batch", 2: "samples"}},
    )
    print(f"exported the decoder to ONNX in {time.perf_counter() - start:.1f} s")
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run_ort(z):
        return session.run(None, {"z": z.numpy()})[0]

    print(f"decoder pass, torch (A) vs onnxruntime (B), threads={torch.get_num_threads()}, {clock.__name__}")
    _ab_windows(
        "torch, fast convolutions (today)",
        ours.decoder,
        "onnxruntime",
        run_ort,
        ours.latent_dim,
        rounds,
        clock,
    )


def compile_ab(model_dir, rounds: int, threads: int | None, frames: int = 12) -> None:
    """Today's decoder pass vs ``torch.compile`` of it, one static shape (1 x ``frames`` frames)."""
    import torch
    from snac import SNAC

    from voicelab.snac_inference import prepare_for_inference

    clock = _clock(threads)
    ours = _quiet(prepare_for_inference(SNAC.from_pretrained(str(model_dir)).eval()))
    z = torch.randn(1, ours.latent_dim, 4 * frames, generator=torch.Generator().manual_seed(0))
    compiled = torch.compile(ours.decoder, dynamic=False)
    cpu, wall = time.process_time(), time.perf_counter()
    with torch.inference_mode():
        compiled(z)
    print(
        f"torch.compile of the decoder for 1 x {frames} frames: {time.process_time() - cpu:.1f} s CPU in this "
        f"process, {time.perf_counter() - wall:.1f} s wall (compile workers included)"
    )
    print(f"decoder pass, eager (A) vs compiled (B), threads={torch.get_num_threads()}, {clock.__name__}")
    print(load_line("before"))
    with torch.inference_mode():
        diff = float((ours.decoder(z) - compiled(z)).abs().max())
        cmp = Comparison("eager (today)", "torch.compile").run(
            rounds, _rate(ours.decoder, z, clock), _rate(compiled, z, clock), verbose=False
        )
    print(load_line("after"))
    print(f"1 x {frames} frames (max |diff| {diff:.1e}, noise off):")
    print(cmp.report("audio s/s", higher_is_better=True))


def streams_ab(model_dir, rounds: int, n_streams: int = 16, n_frames: int = 36) -> None:
    """Unpaced aggregate audio s/s of ``n_streams`` StreamingSnacDecoder streams, stock vs fast convolutions."""
    sys.path.insert(0, str(Path(__file__).parent))
    import bench_decode
    import voicelab.engine.decoder as decoder_module
    from voicelab.snac_inference import prepare_for_inference

    new = decoder_module.StreamingSnacDecoder(model_dir)
    stock_prepare = decoder_module.prepare_for_inference
    decoder_module.prepare_for_inference = functools.partial(prepare_for_inference, fast_decoder=False)
    try:
        old = decoder_module.StreamingSnacDecoder(model_dir)
    finally:
        decoder_module.prepare_for_inference = stock_prepare

    def aggregate(dec):
        def run() -> float:
            stats, wall = bench_decode.run_streams(dec, n_streams, n_frames)
            return sum(s.audio_s for s in stats) / wall

        return run

    print(f"{n_streams} streams of {n_frames} frames, unpaced, aggregate audio s / wall s")
    print(load_line("before"))
    cmp = Comparison("stock convolutions", "fast convolutions").run(rounds, aggregate(old), aggregate(new))
    print(load_line("after"))
    print(cmp.report("audio s/s", higher_is_better=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "what", choices=["decoder", "streams", "onnx", "compile"], nargs="?", default="decoder"
    )
    parser.add_argument("--rounds", type=int, default=5, help=f"interleaved rounds (>= {MIN_ROUNDS})")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (decoder, onnx)")
    args = parser.parse_args(argv)
    from voicelab.testing import build_tiny_snac

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny_snac(tmp, real_size=True)
        print(machine_line())
        if args.what == "decoder":
            decoder_ab(model_dir, args.rounds, args.threads)
        elif args.what == "compile":
            compile_ab(model_dir, args.rounds, args.threads)
        elif args.what == "onnx":
            onnx_ab(model_dir, args.rounds, args.threads, Path(tmp))
        else:
            streams_ab(model_dir, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
