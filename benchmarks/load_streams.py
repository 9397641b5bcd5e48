"""N concurrent streaming speech requests against the API backed by the stand-in vLLM.

Builds a tiny Orpheus tokenizer/model folder and a tiny SNAC offline, starts the stand-in vLLM
(``voicelab.testing.fake_vllm``, paced at ``--token-delay`` seconds per chunk of 7 tokens, i.e. one audio
frame) and the real API server (``create_app`` with the vLLM engine) on local ports, then sends ``--streams``
concurrent ``POST /v1/audio/speech`` requests (pcm, streamed), ``--rounds`` times. Reports:

* errors (non-200 statuses and broken transfers) and short responses (fewer bytes than the stand-in's
  frames for that prompt: every frame must arrive);
* time to first byte (TTFB) p50/p95 and total time per request p50/p95;
* resident memory of this process (API + stand-in + clients) before and after, and peak.

Both servers are uvicorn with a listen backlog of ``--backlog`` (2048 by default). A stand-in built on
Python's ``ThreadingHTTPServer`` listens with a backlog of 5: with more concurrent connections than that,
the kernel drops SYNs and clients stall for a second per retry, which looks like server latency.

Usage: ``python benchmarks/load_streams.py [--streams 64] [--rounds 3] [--token-delay 0.01]``
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

TEXT = "The quick brown fox jumps over the lazy dog, twice, for the load test."


@dataclass
class Outcome:
    status: int
    nbytes: int
    ttfb: float
    total: float
    error: str | None = None


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def one_stream(client, url: str, body: dict) -> Outcome:
    import httpx

    started = time.perf_counter()
    ttfb = float("nan")
    nbytes = 0
    try:
        async with client.stream("POST", url, json=body) as response:
            async for chunk in response.aiter_bytes():
                if nbytes == 0:
                    ttfb = time.perf_counter() - started
                nbytes += len(chunk)
            return Outcome(response.status_code, nbytes, ttfb, time.perf_counter() - started)
    except httpx.HTTPError as e:
        return Outcome(0, nbytes, ttfb, time.perf_counter() - started, f"{type(e).__name__}: {e}")


async def run_round(url: str, streams: int, body: dict) -> list[Outcome]:
    import httpx

    limits = httpx.Limits(max_connections=streams, max_keepalive_connections=streams)
    async with httpx.AsyncClient(timeout=httpx.Timeout(120.0), limits=limits) as client:
        return await asyncio.gather(*(one_stream(client, url, body) for _ in range(streams)))


def percentile(values: list[float], q: float) -> float:
    values = sorted(v for v in values if v == v)
    if not values:
        return float("nan")
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=64, help="concurrent requests per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--token-delay", type=float, default=0.01, help="stand-in seconds per audio frame")
    parser.add_argument("--backlog", type=int, default=2048, help="listen backlog of the API server")
    args = parser.parse_args(argv)

    from transformers import AutoTokenizer

    from voicelab import orpheus
    from voicelab.server.app import create_app
    from voicelab.server.settings import Settings
    from voicelab.testing.fake_vllm import FakeVLLMServer
    from voicelab.testing.models import build_tiny_orpheus, build_tiny_snac
    from voicelab.testing.server import ServerThread
    from voicelab.testing.voices import write_voice_folder

    with tempfile.TemporaryDirectory() as tmp:
        base = build_tiny_orpheus(Path(tmp) / "orpheus")
        snac = build_tiny_snac(Path(tmp) / "snac")
        write_voice_folder(Path(tmp) / "voices", "alice", base_model=str(base), prompt_prefix="alice: ")
        prompt = orpheus.inference_prompt_ids(AutoTokenizer.from_pretrained(base), TEXT, "alice: ")
        with FakeVLLMServer(
            base_model=str(base), tokens_per_chunk=orpheus.CODES_PER_FRAME, token_delay=args.token_delay
        ) as vllm:
            expected = vllm.n_frames_for(prompt) * orpheus.SAMPLES_PER_FRAME * 2  # pcm: 2 bytes per sample
            settings = Settings(
                voices_dir=Path(tmp) / "voices",
                vllm_url=vllm.url,
                base_model=str(base),
                snac_model=str(snac),
                max_concurrent_requests=args.streams,
                log_level="ERROR",  # the placeholder voice names no SNAC: its warning is noise here
            )
            with ServerThread(create_app(settings), backlog=args.backlog) as api:
                url = f"{api.url}/v1/audio/speech"
                body = {"model": "orpheus", "voice": "alice", "input": TEXT, "response_format": "pcm"}
                asyncio.run(run_round(url, 1, body))  # warm-up: first decode, connection set-up
                before = rss_mib()
                outcomes: list[Outcome] = []
                started = time.perf_counter()
                for _ in range(args.rounds):
                    outcomes += asyncio.run(run_round(url, args.streams, body))
                wall = time.perf_counter() - started
                after = rss_mib()
    report(outcomes, expected, args, wall, before, after)
    failed = [o for o in outcomes if o.status != 200 or o.error or o.nbytes != expected]
    return 1 if failed else 0


def report(outcomes: list[Outcome], expected: int, args, wall: float, before: float, after: float) -> None:
    errors = [o for o in outcomes if o.status != 200 or o.error]
    short = [o for o in outcomes if not (o.status != 200 or o.error) and o.nbytes != expected]
    lines = [
        f"{len(outcomes)} requests ({args.rounds} rounds x {args.streams} concurrent), pcm, "
        f"stand-in at {args.token_delay * 1000:.0f} ms/frame; wall {wall:.1f} s",
        f"completed at full length: {len(outcomes) - len(errors) - len(short)}/{len(outcomes)} "
        f"(expected {expected} bytes each); errors: {len(errors)}; short: {len(short)}",
        f"TTFB p50 {percentile([o.ttfb for o in outcomes], 0.5) * 1000:.0f} ms, "
        f"p95 {percentile([o.ttfb for o in outcomes], 0.95) * 1000:.0f} ms; "
        f"total p50 {percentile([o.total for o in outcomes], 0.5):.2f} s, "
        f"p95 {percentile([o.total for o in outcomes], 0.95):.2f} s",
        f"RSS before {before:.0f} MiB, after {after:.0f} MiB, peak {peak_rss_mib():.0f} MiB",
    ]
    for o in errors[:5]:
        lines.append(f"  error: status {o.status}, {o.nbytes} bytes, {o.error}")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
