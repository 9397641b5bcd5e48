"""Interleaved A/B of the fast decoder convolutions (``voicelab.snac_inference.use_fast_decoder_convs``).

Old = ``prepare_for_inference(model, fast_decoder=False)``; new = the default. Same process, same inputs,
old and new alternated (order flipped every round) so that load from other processes hits both alike;
medians reported. Real snac_24khz configuration, random weights.

* ``decoder``: one ``model.decoder`` pass on latents of (batch, frames) windows; wall time with the default
  threads, or CPU time with ``--threads 1`` (less sensitive to other processes);
* ``streams``: token-paced (1.2x real time) aggregate audio s / wall s of 1 and 16 ``StreamingSnacDecoder``
  streams (the issue 6 goal: 16 streams >= 4x one stream).

Usage: ``python benchmarks/bench_snac_fast_convs.py [decoder|streams] [--rounds 7] [--threads N]``
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import sys
import tempfile
import time
from pathlib import Path


def decoder_ab(model_dir, rounds: int, threads: int | None) -> None:
    import torch
    from snac import SNAC

    from voicelab.snac_inference import prepare_for_inference

    if threads:
        torch.set_num_threads(threads)
    clock = time.process_time if torch.get_num_threads() == 1 else time.perf_counter
    old = prepare_for_inference(SNAC.from_pretrained(str(model_dir)).eval(), fast_decoder=False)
    new = prepare_for_inference(SNAC.from_pretrained(str(model_dir)).eval())
    print(
        f"decoder pass, torch threads={torch.get_num_threads()}, clock={clock.__name__}, medians of {rounds}"
    )
    gen = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        for batch, frames in [(1, 6), (1, 12), (1, 36), (4, 8), (2, 16)]:
            z = torch.randn(batch, old.latent_dim, 4 * frames, generator=gen)
            torch.manual_seed(0)
            a = old.decoder(z)
            torch.manual_seed(0)
            diff = (a - new.decoder(z)).abs().max().item()
            times = {"old": [], "new": []}
            for r in range(rounds):
                for name, model in (("old", old), ("new", new))[:: 1 if r % 2 == 0 else -1]:
                    t = clock()
                    model.decoder(z)
                    times[name].append(clock() - t)
            audio = batch * frames * 2048 / 24000
            t_old, t_new = statistics.median(times["old"]), statistics.median(times["new"])
            print(
                f"  batch {batch} x {frames:2d} frames: old {audio / t_old:5.2f} audio s/s, new {audio / t_new:5.2f}"
                f"  speed-up {t_old / t_new:4.2f}x  max |diff| {diff:.1e}"
            )


def streams_ab(model_dir, rounds: int) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    import bench_decode
    import voicelab.engine.decoder as decoder_module
    from voicelab import orpheus
    from voicelab.snac_inference import prepare_for_inference

    new = decoder_module.StreamingSnacDecoder(model_dir)
    stock_prepare = decoder_module.prepare_for_inference
    decoder_module.prepare_for_inference = functools.partial(prepare_for_inference, fast_decoder=False)
    try:
        old = decoder_module.StreamingSnacDecoder(model_dir)
    finally:
        decoder_module.prepare_for_inference = stock_prepare
    frames, pace = 47, 1.2 * orpheus.TOKENS_PER_SECOND
    for dec in (old, new):
        dec.decode_frames(bench_decode._frames(8, 0))
    res = {name: {1: [], 16: []} for name in ("old", "new")}
    for r in range(rounds):
        for name, dec in (("old", old), ("new", new))[:: 1 if r % 2 == 0 else -1]:
            for n in (1, 16):
                res[name][n].append(asyncio.run(bench_decode.concurrent(dec, n, frames, pace))[0])
            print(f"  round {r} {name}: 1 stream {res[name][1][-1]:.2f}, 16 streams {res[name][16][-1]:.2f}")
    for name in ("old", "new"):
        one, many = statistics.median(res[name][1]), statistics.median(res[name][16])
        print(f"median {name}: 1 stream {one:.2f}, 16 streams {many:.2f} audio s/s, ratio {many / one:.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("what", choices=["decoder", "streams"], nargs="?", default="decoder")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (decoder only)")
    args = parser.parse_args(argv)
    from voicelab.testing import build_tiny_snac

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny_snac(tmp, real_size=True)
        if args.what == "decoder":
            decoder_ab(model_dir, args.rounds, args.threads)
        else:
            streams_ab(model_dir, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
