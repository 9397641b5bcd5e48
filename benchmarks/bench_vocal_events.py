"""How reliable the non-speech sound measure (voicelab.vocal_events) is on constructed audio.

Two espeak-ng sentences per case, in several espeak voices, with between them: nothing, a laugh-like
burst (3-7 syllables, 3.5-6 per second, pitch 180-350 Hz), a sigh-like exhale (0.6-1.2 s), or a word
spoken by espeak ("laugh", "sigh", "ha ha ha"); clean, or with white noise 35 dB under the speech.
Prints, per kind of insert, how often an event was found, and for the bursts how far its centre was from
the burst's. Then the tags check's audio side (voicelab.evaluate.tag_check.judge, transcripts left out): how often
a pair "plain sentence / sentence with the insert between its halves" is called rendered, for the insert
where the tag is and for a burst placed after the sentence instead.

    .venv/bin/python benchmarks/bench_vocal_events.py [--cases N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

from harness import load_line
from voicelab import testing
from voicelab.audio import read_audio
from voicelab.evaluate import tag_check
from voicelab.testing import vocal
from voicelab.vocal_events import measure_windows, sound_events

SR = 16_000
VOICES = ("en-us", "en-gb-x-rp", "en-us+f3", "en-us+m7", "en-us+klatt")
SPOKEN = ("laugh", "sigh", "ha ha ha")
NOISE_UNDER_SPEECH_DB = 35.0


def inserts(rng: np.random.Generator, voice: str, folder: Path) -> dict[str, np.ndarray | None]:
    laugh = vocal.laugh_burst(
        SR,
        syllables=int(rng.integers(3, 8)),
        rate_hz=float(rng.uniform(3.5, 6.0)),
        f0=float(rng.uniform(180, 350)),
        seed=int(rng.integers(1 << 30)),
    )
    sigh = vocal.sigh(SR, seconds=float(rng.uniform(0.6, 1.2)), seed=int(rng.integers(1 << 30)))
    found: dict[str, np.ndarray | None] = {"nothing": None, "laugh burst": laugh, "sigh": sigh}
    for word in SPOKEN:
        path = testing.speak([word], folder / f"{voice}_{word}.wav", voice=voice)
        found[f"spoken '{word}'"] = read_audio(path, SR)[0]
    return found


def with_noise(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    level = np.sqrt(np.mean(np.square(audio[np.abs(audio) > 1e-3]))) * 10 ** (-NOISE_UNDER_SPEECH_DB / 20)
    return (audio + level * rng.standard_normal(len(audio))).astype(np.float32)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=40, help="sentence pairs x voices x noise to build")
    args = parser.parse_args()
    print(load_line("before"))
    rng = np.random.default_rng(0)
    found: dict[str, list[bool]] = {}
    offsets: dict[str, list[float]] = {}
    rendered: dict[str, list[bool]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for case in range(args.cases):
            voice = VOICES[case % len(VOICES)]
            first, second = tag_check.TAG_SENTENCES[(case // len(VOICES)) % len(tag_check.TAG_SENTENCES)]
            a = read_audio(testing.speak([first], folder / "a.wav", voice=voice), SR)[0]
            b = read_audio(testing.speak([second], folder / "b.wav", voice=voice), SR)[0]
            noisy = case % 2 == 1
            plain = vocal.join([a, b], SR)
            plain = with_noise(plain, rng) if noisy else plain
            position = _position(first, second)
            for kind, insert in inserts(rng, voice, folder).items():
                parts = [a, b] if insert is None else [a, insert, b]
                audio = vocal.join(parts, SR)
                audio = with_noise(audio, rng) if noisy else audio
                events = sound_events(audio, SR)
                label = f"{kind}{' + noise' if noisy else ''}"
                found.setdefault(label, []).append(bool(events))
                rendered.setdefault(f"{label}, at the tag", []).append(_rendered(audio, plain, position))
                if kind == "laugh burst":
                    late = vocal.join([a, b, np.zeros(SR, np.float32), insert], SR)
                    late = with_noise(late, rng) if noisy else late
                    rendered.setdefault(f"{label}, after the sentence", []).append(
                        _rendered(late, plain, position)
                    )
                if insert is not None and events and kind in ("laugh burst", "sigh"):
                    centre = (len(a) + round(0.2 * SR) + len(insert) / 2) / SR
                    offsets.setdefault(label, []).append(min(abs(e.centre_s - centre) for e in events))
    print(f"{'insert':32} {'cases':>5} {'event found':>12} {'centre off by (median, max s)':>30}")
    for label, hits in sorted(found.items()):
        off = offsets.get(label)
        where = f"{statistics.median(off):.2f}, {max(off):.2f}" if off else ""
        print(f"{label:32} {len(hits):5d} {sum(hits) / len(hits):12.0%} {where:>30}")
    print(f"\n{'tags check, insert':44} {'cases':>5} {'rendered':>9}")
    for label, hits in sorted(rendered.items()):
        print(f"{label:44} {len(hits):5d} {sum(hits) / len(hits):9.0%}")
    print(load_line("after"))
    return 0


def _position(first: str, second: str) -> float:
    before, after = (sum(c.isalpha() for c in half) for half in (first, second))
    return before / (before + after)


def _rendered(tagged: np.ndarray, plain: np.ndarray, position: float) -> bool:
    heard = [{"transcript": "", "measures": measure_windows(x, SR)} for x in (tagged, plain)]
    return tag_check.judge("laugh", position, *heard)["verdict"] == tag_check.RENDERED


if __name__ == "__main__":
    sys.exit(main())
