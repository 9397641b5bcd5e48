"""The Orpheus token contract, pinned: any change of id, position offset or frame order fails here."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from voicelab import orpheus
from voicelab.orpheus import AudioTokenParser, ContractError, InvalidAudioTokenError, InvalidCodesError

# Hand-worked example: two frames, codes chosen so every position and both code limits show.
L0 = [0, 4095]
L1 = [1, 2, 3, 4]
L2 = [5, 6, 7, 8, 9, 10, 11, 12]
# Frame i = [L0[i], L1[2i], L2[4i], L2[4i+1], L1[2i+1], L2[4i+2], L2[4i+3]]
FRAMES = [[0, 1, 5, 6, 2, 7, 8], [4095, 3, 9, 10, 4, 11, 12]]
# token = 128266 + position * 4096 + code; position bases 128266, 132362, 136458, 140554, 144650, 148746, 152842
TOKENS = [
    128266,
    132363,
    136463,
    140560,
    144652,
    148753,
    152850,
    132361,
    132365,
    136467,
    140564,
    144654,
    148757,
    152854,
]


class CharTokenizer:
    """Deterministic stand-in: one id per character (ord), no special tokens."""

    def encode(self, text, add_special_tokens=True):
        return [ord(c) for c in text]


def test_token_ids_are_the_published_ones():
    assert orpheus.BEGIN_OF_TEXT == 128000
    assert orpheus.END_OF_TEXT == 128009
    assert orpheus.START_OF_SPEECH == 128257
    assert orpheus.END_OF_SPEECH == 128258
    assert orpheus.START_OF_HUMAN == 128259
    assert orpheus.END_OF_HUMAN == 128260
    assert orpheus.START_OF_AI == 128261
    assert orpheus.END_OF_AI == 128262
    assert orpheus.PAD == 128263
    assert orpheus.AUDIO_TOKEN_BASE == 128266
    assert orpheus.AUDIO_TOKEN_END == 156938
    assert orpheus.custom_token_id(10) == 128266
    assert (orpheus.CODEBOOK_SIZE, orpheus.CODES_PER_FRAME, orpheus.SAMPLES_PER_FRAME) == (4096, 7, 2048)
    assert orpheus.SAMPLE_RATE == 24000
    assert orpheus.TOKENS_PER_SECOND == pytest.approx(82.03, abs=0.01)


def test_hand_worked_codes_to_tokens():
    frames = orpheus.codes_to_frames([L0, L1, L2])
    assert frames.tolist() == FRAMES
    assert orpheus.frames_to_tokens(frames).tolist() == TOKENS
    assert orpheus.codes_to_tokens([L0, L1, L2]).tolist() == TOKENS


def test_hand_worked_tokens_to_codes():
    l0, l1, l2 = orpheus.tokens_to_codes(TOKENS)
    assert (l0.tolist(), l1.tolist(), l2.tolist()) == (L0, L1, L2)


def test_codes_accept_snac_style_batched_tensors():
    import torch

    codes = [torch.tensor([L0]), torch.tensor([L1]), torch.tensor([L2])]
    assert orpheus.codes_to_tokens(codes).tolist() == TOKENS


@st.composite
def snac_codes(draw):
    n = draw(st.integers(min_value=0, max_value=12))
    code = st.integers(min_value=0, max_value=orpheus.CODEBOOK_SIZE - 1)
    return [draw(st.lists(code, min_size=n * k, max_size=n * k)) for k in (1, 2, 4)]


@given(snac_codes())
def test_round_trip_codes_tokens_codes(codes):
    tokens = orpheus.codes_to_tokens(codes)
    assert len(tokens) == len(codes[0]) * orpheus.CODES_PER_FRAME
    assert ((tokens >= orpheus.AUDIO_TOKEN_BASE) & (tokens < orpheus.AUDIO_TOKEN_END)).all()
    back = orpheus.tokens_to_codes(tokens)
    assert [b.tolist() for b in back] == codes


@given(snac_codes(), st.lists(st.integers(min_value=1, max_value=9), max_size=20))
def test_streaming_parser_reassembles_frames_from_any_chunking(codes, chunk_sizes):
    tokens = orpheus.codes_to_tokens(codes).tolist()
    parser = AudioTokenParser()
    frames, i, sizes = [], 0, iter(chunk_sizes)
    while i < len(tokens):
        n = next(sizes, 5)
        frames.append(parser.feed_ids(tokens[i : i + n]))
        i += n
    frames.append(parser.feed_ids([orpheus.END_OF_SPEECH]))
    assert parser.ended
    got = np.concatenate(frames) if frames else np.empty((0, 7))
    np.testing.assert_array_equal(got.reshape(-1, 7), orpheus.codes_to_frames(codes))


def test_code_limits_0_and_4095_survive():
    codes = [[0, 4095], [0, 4095, 0, 4095], [0, 4095, 0, 4095, 0, 4095, 0, 4095]]
    assert [c.tolist() for c in orpheus.tokens_to_codes(orpheus.codes_to_tokens(codes))] == codes


@pytest.mark.parametrize("bad", [-1, 4096, 10_000])
def test_codes_out_of_range_are_refused(bad):
    with pytest.raises(InvalidCodesError, match=str(bad)):
        orpheus.codes_to_tokens([[bad], [0, 0], [0, 0, 0, 0]])


def test_codes_with_wrong_level_lengths_are_refused():
    with pytest.raises(InvalidCodesError, match="level 2"):
        orpheus.codes_to_frames([[0], [0, 0], [0, 0, 0]])
    with pytest.raises(InvalidCodesError, match="3 SNAC levels"):
        orpheus.codes_to_frames([[0], [0, 0]])


@pytest.mark.parametrize(
    ("index", "bad_id"),
    [
        (0, orpheus.AUDIO_TOKEN_BASE - 1),  # just below the audio range
        (0, orpheus.AUDIO_TOKEN_BASE + 4096),  # a position-1 token at position 0
        (1, orpheus.AUDIO_TOKEN_BASE + 4095),  # a position-0 token at position 1
        (6, orpheus.AUDIO_TOKEN_END),  # first id past the last audio token
        (3, 42),  # a text token
    ],
)
def test_tokens_at_the_wrong_position_or_out_of_range_are_refused(index, bad_id):
    tokens = list(TOKENS)
    tokens[index] = bad_id
    with pytest.raises(InvalidAudioTokenError, match=f"{bad_id} at audio-token index {index}"):
        orpheus.tokens_to_frames(tokens)
    with pytest.raises(InvalidAudioTokenError):
        AudioTokenParser().feed_ids(tokens)


def test_partial_frame_is_refused_by_the_batch_decoder():
    with pytest.raises(ContractError, match="whole number"):
        orpheus.tokens_to_frames(TOKENS[:10])


def test_duplicate_frames_are_dropped_only_when_asked():
    frames = np.array(
        [[5, 0, 0, 0, 0, 0, 0], [5, 1, 1, 1, 1, 1, 1], [6, 2, 2, 2, 2, 2, 2], [5, 3, 3, 3, 3, 3, 3]]
    )
    codes = orpheus.frames_to_codes(frames)
    assert len(orpheus.codes_to_tokens(codes)) == 4 * 7
    kept = orpheus.remove_duplicate_frames(frames)
    assert kept[:, 0].tolist() == [5, 6, 5]  # compared with the last KEPT frame, not any earlier one
    assert len(orpheus.codes_to_tokens(codes, drop_duplicate_frames=True)) == 3 * 7


def test_inference_prompt_exact_sequence():
    prompt = orpheus.inference_prompt_ids(CharTokenizer(), "hi", prefix="al: ")
    assert prompt == [128259, 128000, *map(ord, "al: hi"), 128009, 128260, 128261, 128257]


def test_training_example_exact_sequence():
    example = orpheus.training_example(CharTokenizer(), "hi", TOKENS, prefix="al: ")
    expected = [128259, 128000, *map(ord, "al: hi"), 128009, 128260, 128261, 128257, *TOKENS, 128258, 128262]
    assert example.input_ids == expected
    assert example.labels == expected
    # the inference prompt is exactly the training sequence up to the first audio token
    prompt = orpheus.inference_prompt_ids(CharTokenizer(), "hi", prefix="al: ")
    assert example.input_ids[: len(prompt)] == prompt


def test_training_example_refuses_bad_audio_tokens():
    with pytest.raises(InvalidAudioTokenError):
        orpheus.training_example(CharTokenizer(), "hi", [*TOKENS[:7], *TOKENS[:7][::-1]])


def test_prompt_with_the_real_tokenizer_matches_its_own_encoding(tiny_tokenizer):
    text = "alice: Hello there, how are you?"
    prompt = orpheus.inference_prompt_ids(tiny_tokenizer, "Hello there, how are you?", prefix="alice: ")
    with_bos = tiny_tokenizer(text)["input_ids"]
    assert with_bos[0] == orpheus.BEGIN_OF_TEXT
    assert prompt == [orpheus.START_OF_HUMAN, *with_bos, 128009, 128260, 128261, 128257]


def test_pad_batch_pads_inputs_with_pad_and_labels_with_ignore_index():
    a = orpheus.TrainingExample([1, 2, 3], [1, 2, 3])
    b = orpheus.TrainingExample([4], [4])
    batch = orpheus.pad_batch([a, b])
    assert batch["input_ids"] == [[1, 2, 3], [4, orpheus.PAD, orpheus.PAD]]
    assert batch["labels"] == [[1, 2, 3], [4, -100, -100]]
    assert batch["attention_mask"] == [[1, 1, 1], [1, 0, 0]]


def test_max_new_tokens_grows_with_text_and_passes_the_14_second_cap():
    short = orpheus.max_new_tokens_for_text("Hi.")
    long = orpheus.max_new_tokens_for_text("word " * 100)
    assert short > 16
    assert short % orpheus.CODES_PER_FRAME == 0 and long % orpheus.CODES_PER_FRAME == 0  # whole frames
    assert long > 1200  # 500 characters of text need more than 14 s of audio
    assert orpheus.max_new_tokens_for_text("word " * 100, cap=2000) == 1995  # 285 whole frames
    # "Hi.": 3 chars / 5 chars/s + 3 s headroom = 3.6 s = 42.2 frames -> 43 frames + 1 for the end of speech
    assert short == 44 * 7


def test_budget_for_a_prompt_counts_each_id_as_the_longest_text_token():
    # 10 ids x 8 chars = 80 chars: 16 s + 3 s headroom = 19 s = 222.7 frames -> 223 frames + 1 (end of speech)
    assert orpheus.max_new_tokens_for_prompt(list(range(10))) == 224 * 7


def test_a_budget_is_whole_frames():
    assert orpheus.whole_frames_budget(2000) == 1995
    assert orpheus.whole_frames_budget(7 * 30) == 7 * 30
    assert orpheus.whole_frames_budget(5) == 5  # under one frame: nothing to round to


def test_added_tokens_are_spelled_custom_token_n():
    assert orpheus.token_spelling(128266) == "<custom_token_10>"
    assert orpheus.token_spelling(orpheus.PAD) == "<custom_token_7>"
    assert orpheus.token_spelling(orpheus.TEXT_VOCAB_SIZE) == "<custom_token_0>"
    for not_added in (orpheus.END_OF_TEXT, orpheus.VOCAB_SIZE):
        with pytest.raises(ValueError, match=str(not_added)):
            orpheus.token_spelling(not_added)
    assert orpheus.count_token_spellings("<custom_token_10> <custom_token_4106><custom_token_1") == 2
    assert orpheus.count_token_spellings("custom_token_3 <custom_token_> hello") == 0


def test_audio_token_range_per_frame_position():
    assert orpheus.audio_token_range(0) == range(128266, 132362)
    assert orpheus.audio_token_range(6) == range(152842, 156938)
    assert orpheus.audio_token_range(6).stop == orpheus.AUDIO_TOKEN_END
    for bad in (-1, 7):
        with pytest.raises(ValueError, match="frame position"):
            orpheus.audio_token_range(bad)


class TestStreamingParser:
    def test_text_chunks_with_several_tokens_and_split_tokens(self):
        text = "".join(f"<custom_token_{t - orpheus.TEXT_VOCAB_SIZE}>" for t in TOKENS)
        parser = AudioTokenParser()
        chunks = [text[:5], text[5:40], text[40:41], text[41:200], text[200:]]
        got = [parser.feed_text(c) for c in chunks]
        got.append(parser.feed_text("<custom_token_2>"))
        assert parser.ended
        np.testing.assert_array_equal(np.concatenate(got), FRAMES)

    def test_first_frame_is_emitted_as_soon_as_it_is_complete(self):
        parser = AudioTokenParser()
        assert parser.feed_ids(TOKENS[:6]).shape == (0, 7)
        assert parser.feed_ids(TOKENS[6:7]).tolist() == [FRAMES[0]]

    def test_code_zero_keeps_alignment(self):
        # the public reference drops code 0 and shifts every later position; we must not
        parser = AudioTokenParser()
        frames = parser.feed_ids(TOKENS)
        assert frames[0, 0] == 0 and frames[1].tolist() == FRAMES[1]

    def test_partial_trailing_frame_is_dropped_with_a_log_line(self, caplog):
        parser = AudioTokenParser()
        parser.feed_ids(TOKENS[:10])
        with caplog.at_level(logging.WARNING, logger="voicelab.orpheus"):
            assert parser.finish() == 3
        assert "partial trailing frame" in caplog.text

    def test_tokens_after_end_of_speech_are_ignored(self):
        parser = AudioTokenParser()
        frames = parser.feed_ids([*TOKENS[:7], orpheus.END_OF_SPEECH, *TOKENS[7:]])
        assert frames.tolist() == [FRAMES[0]] and parser.ended
        assert parser.feed_ids(TOKENS).shape == (0, 7)

    def test_leading_start_of_speech_is_skipped(self):
        assert AudioTokenParser().feed_ids([orpheus.START_OF_SPEECH, *TOKENS[:7]]).tolist() == [FRAMES[0]]

    def test_junk_text_is_refused(self):
        with pytest.raises(InvalidAudioTokenError, match="unexpected text"):
            AudioTokenParser().feed_text("<custom_token_10>hello")
        with pytest.raises(InvalidAudioTokenError, match="unexpected text"):
            AudioTokenParser().feed_text("<custom_tokex_10>")

    def test_stream_ending_inside_a_token_is_refused(self):
        parser = AudioTokenParser()
        parser.feed_text("<custom_token_1")
        with pytest.raises(InvalidAudioTokenError, match="inside a token"):
            parser.finish()
