"""``make evaluate``'s tags check: does the voice render each expressive tag, ignore it, or read it aloud?

For each tag the voice was trained with (voice.json ``tags``), and for the rest of Orpheus' tag set
(marked "base": the voice never saw them, only the base model may know them), the voice speaks sentences
twice: as they are (``plain``) and with the tag between their two halves (``tagged``). Then, per pair:

* **read aloud**: Whisper's transcript of the tagged audio says the tag's word ("laugh", "laughing",
  ``dataset.spoken_tags``) and the plain audio's does not: the voice read the tag as text;
* **rendered**: the tagged audio holds a non-speech sound (``voicelab.vocal_events``) where the tag was,
  and the plain audio holds none there. "Where": the moment the audio has spoken the tag's share of the
  sentence's letters (counted in speech windows, so pauses and the sound itself do not move it), give or
  take ``PLACE_TOLERANCE_S`` or ``PLACE_TOLERANCE_SHARE`` of the speech time, whichever is larger
  (speech is not read at an even pace);
* **ignored**: neither.

A tag's verdict over its sentences: "read aloud" if any pair was (what a listener notices first), else
"rendered" if at least half were, else "ignored". docs/tags.md says how far the measure can be trusted.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from voicelab import dataset, orpheus
from voicelab.evaluate.recording import Sample, speak
from voicelab.evaluate_settings import TAG_SENTENCES

logger = logging.getLogger(__name__)

PLACE_TOLERANCE_S = 1.0
PLACE_TOLERANCE_SHARE = 0.25
RENDERED, READ_ALOUD, IGNORED, NOT_MEASURED = "rendered", "read aloud", "ignored", "n/a"
VERDICTS = (RENDERED, IGNORED, READ_ALOUD, NOT_MEASURED)
TRAINED, BASE = "trained", "base"


@dataclass(frozen=True)
class Trial:
    """One sentence of the check: its plain and tagged texts and where the tag sits."""

    tag: str
    sentence: int
    plain: str
    tagged: str
    position: float
    """Share of the sentence's letters before the tag."""


def tags_to_check(trained: Mapping[str, Any], only: Sequence[str] | None = None) -> list[tuple[str, str]]:
    """``(tag, "trained" | "base")``: the trained tags first, then the rest of the set (``only``: those)."""
    chosen = [t for t in dataset.ORPHEUS_TAGS if only is None or t in only]
    return [(t, TRAINED) for t in chosen if trained.get(t)] + [
        (t, BASE) for t in chosen if not trained.get(t)
    ]


def plain_text(sentence: int) -> str:
    return " ".join(TAG_SENTENCES[sentence])


def trial(tag: str, sentence: int) -> Trial:
    first, second = TAG_SENTENCES[sentence]
    before, after = (sum(c.isalpha() for c in half) for half in (first, second))
    return Trial(
        tag,
        sentence,
        plain_text(sentence),
        f"{first} {dataset.tag_spelling(tag)} {second}",
        before / (before + after),
    )


def expected_place(measures, position: float) -> tuple[float, float] | None:
    """The stretch (seconds) where a sound for a tag at ``position`` should be; None without speech."""
    from voicelab.vocal_events import SPEECH_PROBABILITY, WINDOW_S

    spoken = np.cumsum(measures.sounding() & (measures.speech >= SPEECH_PROBABILITY))
    if not len(spoken) or spoken[-1] == 0:
        return None
    window = int(np.searchsorted(spoken, max(position * spoken[-1], 1)))  # speech up to here: the share
    at = (window + 1) * WINDOW_S
    tolerance = max(PLACE_TOLERANCE_S, PLACE_TOLERANCE_SHARE * spoken[-1] * WINDOW_S)
    return at - tolerance, at + tolerance


def event_at(measures, position: float):
    """The longest non-speech sound overlapping the tag's expected place, or None."""
    from voicelab.vocal_events import find_events, longest

    place = expected_place(measures, position)
    if place is None:
        return None
    near = [e for e in find_events(measures) if e.end_s >= place[0] and e.start_s <= place[1]]
    return longest(near)


def judge(tag: str, position: float, tagged: dict[str, Any], plain: dict[str, Any]) -> dict[str, Any]:
    """One pair's verdict from each audio's ``transcript`` and ``measures`` (``vocal_events``)."""
    if tagged.get("measures") is None or plain.get("measures") is None:
        return {"verdict": NOT_MEASURED, "event": None}
    heard = tag in dataset.spoken_tags(tagged["transcript"]) and tag not in dataset.spoken_tags(
        plain["transcript"]
    )
    event = event_at(tagged["measures"], position)
    there_anyway = event_at(plain["measures"], position) is not None
    verdict = READ_ALOUD if heard else (RENDERED if event is not None and not there_anyway else IGNORED)
    found = (
        None
        if event is None
        else {"start_s": event.start_s, "end_s": event.end_s, "sound_s": event.sounding_s}
    )
    return {"verdict": verdict, "event": found, "plain_has_event": there_anyway}


def tag_verdict(verdicts: Sequence[str]) -> str:
    """ "read aloud" if any pair was, "rendered" if at least half were, else "ignored" (n/a: none measured)."""
    measured = [v for v in verdicts if v != NOT_MEASURED]
    if not measured:
        return NOT_MEASURED
    if READ_ALOUD in measured:
        return READ_ALOUD
    return RENDERED if 2 * measured.count(RENDERED) >= len(measured) else IGNORED


def measure(sample, transcriber) -> dict[str, Any]:
    """What judging needs of one spoken text: Whisper's transcript and the 32 ms window measures."""
    from voicelab.audio import resample
    from voicelab.vocal_events import VAD_SAMPLE_RATE, measure_windows

    if not len(sample.audio):
        return {"transcript": "", "measures": None}
    audio16 = resample(sample.audio, orpheus.SAMPLE_RATE, VAD_SAMPLE_RATE).astype(np.float32)
    transcript = transcriber.transcribe_batch([audio16])[0].text.strip()
    return {"transcript": transcript, "measures": measure_windows(audio16, VAD_SAMPLE_RATE)}


async def run_tags_check(
    synthesizer, recorder, voice, params, transcriber, *, trained, sentences, only=None, progress=True
):
    """Speak and judge every trial; returns the report's ``tags`` part and the samples spoken."""
    from voicelab.progress import progress_bar

    checked = tags_to_check(trained, only)
    count = min(sentences, len(TAG_SENTENCES))
    if not checked or count == 0:
        return None, []
    await recorder.load_voice(voice)
    bar = progress_bar(
        total=count * (len(checked) + 1), desc="tags check", unit="text", disable=None if progress else True
    )
    samples, heard = [], {}
    try:
        for index in range(count):
            plain = Sample(id=f"tagplain_{index}", kind="tag-plain", model="voice", text=plain_text(index))
            samples.append(await speak(synthesizer, recorder, voice, plain, params))
            heard[plain.id] = measure(plain, transcriber)
            bar.update()
            for tag, _ in checked:
                t = trial(tag, index)
                sample = Sample(id=f"tag_{tag}_{index}", kind="tag", model="voice", text=t.tagged)
                samples.append(await speak(synthesizer, recorder, voice, sample, params))
                heard[sample.id] = measure(sample, transcriber)
                bar.update()
    finally:
        bar.close()
    return _report(checked, count, trained, samples, heard), samples


def _report(checked, count, trained, samples, heard) -> dict[str, Any]:
    by_id = {s.id: s for s in samples}
    per_tag = []
    for tag, kind in checked:
        trials = []
        for index in range(count):
            t, sample = trial(tag, index), by_id[f"tag_{tag}_{index}"]
            result = judge(tag, t.position, heard[sample.id], heard[f"tagplain_{index}"])
            sample.metrics.update(
                transcript=heard[sample.id]["transcript"], tag=tag, tag_verdict=result["verdict"]
            )
            trials.append(
                {
                    "sample": sample.id,
                    "text": t.tagged,
                    "transcript": heard[sample.id]["transcript"],
                    **result,
                }
            )
        verdicts = [tr["verdict"] for tr in trials]
        per_tag.append(
            {
                "tag": tag,
                "set": kind,
                "trained": trained.get(tag),
                "verdict": tag_verdict(verdicts),
                "counts": {v: verdicts.count(v) for v in VERDICTS if v in verdicts},
                "trials": trials,
            }
        )
    for index in range(count):
        by_id[f"tagplain_{index}"].metrics.update(transcript=heard[f"tagplain_{index}"]["transcript"])
    return {"sentences": count, "per_tag": per_tag}


def tags_summary(report: dict[str, Any] | None) -> dict[str, Any]:
    """The headline of the check: each tag's verdict, and how many trained tags were read aloud."""
    if not report:
        return {"tags": None, "trained_tags_read_aloud": None}
    trained = [t for t in report["per_tag"] if t["set"] == TRAINED]
    return {
        "tags": {t["tag"]: f"{t['verdict']} ({t['set']})" for t in report["per_tag"]},
        "trained_tags_read_aloud": sum(t["verdict"] == READ_ALOUD for t in trained) if trained else None,
    }


def render_tags(report: dict[str, Any] | None) -> list[str]:
    """summary.md's tags section."""
    if not report:
        return []
    lines = [
        "",
        f"Tags check ({report['sentences']} sentence(s) per tag, each also spoken without the tag):",
        "",
        "| tag | set | trained clips | verdict | rendered / ignored / read aloud |",
        "|---|---|---|---|---|",
    ]
    for t in report["per_tag"]:
        c = t["counts"]
        clips = t["trained"]["clips"] if t["trained"] else 0
        lines.append(
            f"| <{t['tag']}> | {t['set']} | {clips} | {t['verdict']} | "
            f"{c.get(RENDERED, 0)} / {c.get(IGNORED, 0)} / {c.get(READ_ALOUD, 0)} |"
        )
    lines += [
        "",
        "read aloud: the transcript says the tag's word; rendered: a non-speech sound where the tag was "
        "(and none there without it); a base-set tag was not in the training data. A tag the voice must "
        f"learn needs about {dataset.TAG_EXAMPLES_NEEDED} tagged clips.",
    ]
    return lines
