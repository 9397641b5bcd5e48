"""Expressive tags: the one normaliser (properties and examples), the held-out split, and train-lora
writing the tags the voice was trained with into voice.json, spelled in training exactly as serving spells
them (checked on token ids)."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voicelab import dataset, orpheus, testing
from voicelab.audio import write_wav
from voicelab.engine.synthesizer import split_text
from voicelab.training import holdout
from voicelab.voice import EVAL_SUMMARY_FILE, VoiceFolder

SR = orpheus.SAMPLE_RATE
TAG_RE = re.compile(r"<([a-z]+)>")

VARIANTS = {
    "(laughs)": "laugh",
    "[LAUGHTER]": "laugh",
    "(laughing)": "laugh",
    "*laughs*": "laugh",
    "<Laugh>": "laugh",
    "(chuckling)": "chuckle",
    "*chuckles*": "chuckle",
    "[sighs]": "sigh",
    "*sighs*": "sigh",
    "(coughs)": "cough",
    "[sniffles]": "sniffle",
    "(groaning)": "groan",
    "(yawns)": "yawn",
    "[GASPS]": "gasp",
    "(laughs nervously)": "laugh",
}
UNKNOWN = ("<giggle>", "[MUSIC]", "(inaudible)", "*whistles*", "(speaking french)")

plain_text = st.text(
    alphabet=st.characters(blacklist_characters="()[]<>*", blacklist_categories=("Cs",)), max_size=80
)
words = st.lists(
    st.sampled_from(["he", "laughed", "and", "sighed", "laugh", "Well,", "no!", "sure.", "it's", "gasp"]),
    max_size=6,
)


# --- the normaliser ---------------------------------------------------------------------------------
@given(plain_text)
def test_text_without_annotations_passes_through_unchanged(text):
    assert dataset.normalize_tags(text) == dataset.TaggedText(text)


@given(st.text(max_size=80))
def test_normalising_twice_changes_nothing(text):
    once = dataset.normalize_tags(text)
    twice = dataset.normalize_tags(once.text)
    assert twice.text == once.text and twice.tags == once.tags and twice.unknown == ()


@given(st.lists(st.one_of(words.map(" ".join), st.sampled_from([*VARIANTS, *UNKNOWN])), max_size=10))
def test_every_known_variant_becomes_its_tag_and_every_unknown_one_goes(parts):
    text = " ".join(p for p in parts if p)
    result = dataset.normalize_tags(text)
    assert list(result.tags) == [VARIANTS[p] for p in parts if p in VARIANTS]
    assert list(result.unknown) == [p for p in parts if p in UNKNOWN]
    assert TAG_RE.findall(result.text) == list(result.tags)
    spoken = [w for p in parts if p not in VARIANTS and p not in UNKNOWN for w in p.split()]
    assert [w for w in result.text.split() if not TAG_RE.fullmatch(w)] == spoken
    assert "  " not in result.text and result.text == result.text.strip()


@given(st.lists(st.one_of(words.map(" ".join), st.sampled_from(list(VARIANTS))), min_size=1, max_size=12))
def test_rejoined_pieces_keep_every_tag(parts):
    """Normalised piece by piece or whole, and cut into the serving engine's pieces: the same tags."""
    text = " ".join(p for p in parts if p)
    whole = dataset.normalize_tags(text)
    by_piece = " ".join(t for p in parts if (t := dataset.normalize_tags(p).text))
    assert TAG_RE.findall(by_piece) == TAG_RE.findall(whole.text) == list(whole.tags)
    pieces = split_text(whole.text, lambda s: len(s.split()), max_tokens=3)
    assert [t for piece in pieces for t in TAG_RE.findall(piece)] == list(whole.tags)
    assert " ".join(pieces) == " ".join(whole.text.split())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Well (laughs) that was fun.", "Well <laugh> that was fun."),
        ("That's funny (laughs).", "That's funny <laugh>."),
        ("(chuckling) Oh no.", "<chuckle> Oh no."),
        ("Oh no<Laugh>really", "Oh no <laugh> really"),
        ("(music) Hello (inaudible) there.", "Hello there."),
        ("He laughed, then sighed: a gasp.", "He laughed, then sighed: a gasp."),
        ("2 * 3 * 4 is twenty-four [?]", "2 * 3 * 4 is twenty-four [?]"),
    ],
)
def test_examples(text, expected):
    assert dataset.normalize_tags(text).text == expected


def test_unknown_tag_message_says_what_to_do():
    message = dataset.unknown_tag_message("<giggle>")
    assert message.startswith("unknown tag <giggle>: the base model would read it aloud; map it or remove it")
    assert "<laugh>" in message


def test_census_counts_clips_and_occurrences_and_gives_the_guidance():
    census = dataset.count_tags(
        ["(laughs) a (laughs)", "[sighs] b *chuckles*", "<laugh> <giggle> x", "no tag"]
    )
    assert census.as_dict() == {
        "laugh": {"clips": 2, "occurrences": 3},
        "chuckle": {"clips": 1, "occurrences": 1},
        "sigh": {"clips": 1, "occurrences": 1},
    }
    assert census.unknown == {"<giggle>": dataset.TagCount(1, 1)}
    lines = "\n".join(dataset.describe_tags(census))
    assert "<laugh> 2 clips (3x)" in lines and f"about {dataset.TAG_EXAMPLES_NEEDED} examples" in lines
    assert "unknown tag <giggle>" in lines
    assert "none in the texts" in dataset.describe_tags(dataset.count_tags(["plain"]))[0]


# --- the held-out split -------------------------------------------------------------------------------
def test_held_out_split_keeps_each_common_tag_represented():
    names = [f"clip_{i:03d}" for i in range(60)]
    tags = {n: ("laugh",) for n in names[:12]} | {n: ("sigh", "laugh") for n in names[50:52]}
    tags |= {n: ("cough",) for n in names[52:55]}  # too rare to give one away
    for seed in range(10):
        chosen = holdout.choose_eval_clips(names, 3, seed=seed, tags=tags)
        assert len(chosen) == 3 and chosen == holdout.choose_eval_clips(names, 3, seed=seed, tags=tags)
        assert any("laugh" in tags.get(n, ()) for n in chosen)
        assert not any("cough" in tags.get(n, ()) for n in chosen)
    assert holdout.choose_eval_clips(names, 0, seed=0, tags=tags) == []


# --- training -------------------------------------------------------------------------------------------
TAGGED_ROWS = [
    ("c0", "(laughs) That is funny."),
    ("c1", "Well [sighs] okay then."),
    ("c2", "Oh *chuckles* sure."),
    ("c3", "Ha <laugh> again."),
    ("c4", "Hmm <giggle> maybe."),
    ("c5", "He laughed at the joke."),
]


@pytest.fixture(scope="module")
def tagged_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tagged") / "alice"
    folder.mkdir()
    for i, (key, _) in enumerate(TAGGED_ROWS):
        write_wav(folder / f"{key}.wav", testing.speech_like_noise([(0.5, 0.05)], SR, seed=i)[:, 0], SR)
    dataset.write_transcript(folder / dataset.TRANSCRIPT_FILE, TAGGED_ROWS)
    return folder


def test_training_reader_goes_through_the_normaliser(tagged_data):
    from voicelab.training import dataset as ds

    rows, skipped = ds.read_training_rows(tagged_data / dataset.TRANSCRIPT_FILE)
    assert skipped == []
    for row, (_, raw) in zip(rows, TAGGED_ROWS, strict=True):
        assert row.text == dataset.normalize_tags(raw).text
        assert row.unknown_tags == dataset.normalize_tags(raw).unknown


def test_training_sequences_carry_the_tag_as_the_serving_prompt_does(
    tagged_data, tiny_tokenizer, tiny_snac_dir
):
    from voicelab.training import build

    request = build.TrainRequest("alice", tagged_data, snac_model=str(tiny_snac_dir), use_cache=False)
    prepared = build.prepare_examples(request, tiny_tokenizer, progress=False)
    by_text = {}
    for example in prepared.examples:
        end = example.input_ids.index(orpheus.END_OF_TEXT)
        by_text[tiny_tokenizer.decode(example.input_ids[2:end])] = example.input_ids
    ids = by_text["alice: <laugh> That is funny."]
    (piece,) = split_text("<laugh> That is funny.", lambda s: len(tiny_tokenizer.encode(s)))
    serving = orpheus.inference_prompt_ids(tiny_tokenizer, piece, request.prefix)
    assert ids[: len(serving)] == serving
    raw = orpheus.inference_prompt_ids(tiny_tokenizer, "(laughs) That is funny.", request.prefix)
    assert ids[: len(raw)] != raw
    assert "alice: Hmm maybe." in by_text and "alice: He laughed at the joke." in by_text
    assert prepared.tags == {
        "laugh": {"clips": 2, "occurrences": 2},
        "chuckle": {"clips": 1, "occurrences": 1},
        "sigh": {"clips": 1, "occurrences": 1},
    }
    assert prepared.stats["unknown_tags"] == {"<giggle>": 1}


@pytest.fixture(scope="module")
def tagged_voice(tagged_data, tmp_path_factory, tiny_orpheus_dir, tiny_snac_dir):
    """The tagged dataset trained into voice "alice" through the command: its stdout and its log."""
    import contextlib
    import io
    import logging

    from test_train_lora import common_args
    from voicelab.cli import train_lora

    voices = tmp_path_factory.mktemp("tagged_voices")
    args = common_args(voices, tiny_orpheus_dir, tiny_snac_dir)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("voicelab").addHandler(handler)
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            rc = train_lora.main(["alice", str(tagged_data), *args, "--batch-size", "2", "--max-steps", "1"])
    finally:
        logging.getLogger("voicelab").removeHandler(handler)
    log = "\n".join(r.getMessage() for r in records)
    return {"rc": rc, "voices": voices, "out": out.getvalue(), "log": log, "data": tagged_data}


def test_trained_voice_records_its_tags_and_the_run_reports_unknown_ones(tagged_voice):
    assert tagged_voice["rc"] == 0
    voice = json.loads((tagged_voice["voices"] / "alice" / "voice.json").read_text(encoding="utf-8"))
    assert voice["tags"] == {
        "laugh": {"clips": 2, "occurrences": 2},
        "chuckle": {"clips": 1, "occurrences": 1},
        "sigh": {"clips": 1, "occurrences": 1},
    }
    assert voice["dataset"]["unknown_tags"] == {"<giggle>": 1}
    out = tagged_voice["out"]
    assert "<laugh> 2 clips (2x), <chuckle> 1 clips (1x), <sigh> 1 clips (1x)" in out
    giggle = "unknown tag <giggle>: the base model would read it aloud; map it or remove it"
    assert giggle in out and giggle in tagged_voice["log"]


def test_tags_check_end_to_end_through_the_stand_in_vllm(tagged_voice, tiny_orpheus_dir, tiny_whisper_path):
    """evaluate on the tagged voice: trained tags marked as such, a base-set one too, the tagged prompt
    sent exactly as training spelled it, a verdict per tag in eval.json, summary.md and the voice list."""
    from transformers import AutoTokenizer

    from voicelab.cli import evaluate_voice
    from voicelab.evaluate import tag_check
    from voicelab.testing.fake_vllm import FakeVLLMServer

    voices = tagged_voice["voices"]
    flags = [
        "--sentences",
        "1",
        "--max-heldout",
        "0",
        "--max-tokens",
        "70",
        "--no-progress",
        "--device",
        "cpu",
    ]
    flags += ["--tag-sentences", "1", "--tags", "laugh,sigh,gasp", "--whisper-model", str(tiny_whisper_path)]
    with FakeVLLMServer(base_model=str(tiny_orpheus_dir)) as server:
        assert (
            evaluate_voice.main(["alice", "--voices-dir", str(voices), "--vllm-url", server.url, *flags]) == 0
        )
        prompts = [c.body["prompt"] for c in server.completions]
    tokenizer = AutoTokenizer.from_pretrained(tiny_orpheus_dir)
    tagged = tag_check.trial("laugh", 0).tagged
    assert orpheus.inference_prompt_ids(tokenizer, tagged, "alice: ") in prompts
    voice = VoiceFolder(voices / "alice")
    report = json.loads(voice.eval_json_path.read_text(encoding="utf-8"))
    per_tag = {t["tag"]: t for t in report["tags"]["per_tag"]}
    assert [(t, per_tag[t]["set"]) for t in per_tag] == [
        ("laugh", "trained"),
        ("sigh", "trained"),
        ("gasp", "base"),
    ]
    assert per_tag["laugh"]["trained"] == {"clips": 2, "occurrences": 2}
    for entry in per_tag.values():
        assert entry["verdict"] in tag_check.VERDICTS and len(entry["trials"]) == 1
    summary_md = (voice.eval_dir / EVAL_SUMMARY_FILE).read_text(encoding="utf-8")
    assert "| <laugh> | trained | 2 |" in summary_md and "| <gasp> | base | 0 |" in summary_md
    shown = voice.read_eval_summary()
    assert shown["tags"] == {t: f"{e['verdict']} ({e['set']})" for t, e in per_tag.items()}
    assert "trained tags read aloud" in shown["verdicts"]


@pytest.mark.slow
def test_tags_check_of_every_tag_through_the_embedded_engine(tagged_voice, tiny_whisper_path):
    """The whole default set (3 trained, 5 base) in two sentences each, on the embedded engine."""
    from voicelab.cli import evaluate_voice
    from voicelab.evaluate import tag_check

    voices = tagged_voice["voices"]
    flags = [
        "--sentences",
        "1",
        "--max-heldout",
        "0",
        "--max-tokens",
        "70",
        "--no-progress",
        "--device",
        "cpu",
    ]
    flags += ["--tag-sentences", "2", "--whisper-model", str(tiny_whisper_path)]
    assert evaluate_voice.main(["alice", "--voices-dir", str(voices), *flags]) == 0
    report = json.loads(VoiceFolder(voices / "alice").eval_json_path.read_text(encoding="utf-8"))
    assert report["settings"]["engine"] == "local"
    sets = [(t["tag"], t["set"]) for t in report["tags"]["per_tag"]]
    assert sets == tag_check.tags_to_check(json.loads((voices / "alice" / "voice.json").read_text())["tags"])
    assert [t for t, s in sets if s == "trained"] == ["laugh", "chuckle", "sigh"]
    assert all(len(t["trials"]) == 2 for t in report["tags"]["per_tag"])
