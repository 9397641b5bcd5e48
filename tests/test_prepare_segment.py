"""Cut planning on the 10 ms envelope: exact positions on hand-built envelopes, packing cases, invariants."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicelab import segment
from voicelab.segment import CUT_FILE_EDGE, CUT_FORCED, CUT_PAUSE, CUT_SHORT_PAUSE, SplitParams

SPEECH_DB, PAUSE_DB, THRESHOLD_DB = -20.0, -60.0, -40.0
FRAMES_PER_S = 100  # 10 ms frames
PAD = 15  # 150 ms in frames
PARAMS = SplitParams.from_seconds(threshold_db=THRESHOLD_DB, min_s=3.0, max_s=13.0, pause_s=0.5)


def envelope(*parts: tuple[str, float]) -> np.ndarray:
    """``("s", 4.0), ("p", 0.8), ...`` -> frame levels: speech at -20 dBFS, pauses at -60 dBFS."""
    levels = [
        np.full(round(sec * FRAMES_PER_S), SPEECH_DB if kind == "s" else PAUSE_DB) for kind, sec in parts
    ]
    return np.concatenate(levels).astype(np.float32)


def spans(plan: segment.Plan) -> list[tuple[int, int]]:
    return [(c.start, c.end) for c in plan.clips]


def assert_within_bounds(plan: segment.Plan, params: SplitParams = PARAMS) -> None:
    for clip in plan.clips:
        assert params.min_frames <= clip.length <= params.max_frames, clip
    starts = [c.start for c in plan.clips]
    assert starts == sorted(starts)
    assert all(a.end <= b.start for a, b in zip(plan.clips, plan.clips[1:], strict=False))


def test_split_params_round_to_whole_frames_inside_the_bounds():
    assert (PARAMS.min_frames, PARAMS.max_frames, PARAMS.pause_frames, PARAMS.pad_frames) == (
        300,
        1300,
        50,
        15,
    )
    odd = SplitParams.from_seconds(threshold_db=-40, min_s=3.004, max_s=12.996, pause_s=0.5)
    assert (odd.min_frames, odd.max_frames) == (301, 1299)  # never shorter than min, never longer than max
    with pytest.raises(ValueError, match="min duration < max duration"):
        SplitParams.from_seconds(threshold_db=-40, min_s=5, max_s=5, pause_s=0.5)


def test_envelope_is_the_same_whatever_the_block_sizes():
    rng = np.random.default_rng(1)
    audio = (rng.standard_normal(24000 * 2 + 123) * 0.1).astype(np.float32)
    whole = segment.EnvelopeBuilder(240)
    whole.add(audio)
    pieces = segment.EnvelopeBuilder(240)
    for chunk in np.split(audio, [7, 500, 501, 30000]):
        pieces.add(chunk)
    assert len(whole.finish()) == len(audio) // 240  # the trailing partial frame is left out
    np.testing.assert_allclose(pieces.finish(), whole.finish(), atol=1e-5)
    assert pieces.samples == len(audio)


def test_envelope_levels_are_rms_dbfs():
    builder = segment.EnvelopeBuilder(240)
    builder.add(np.concatenate([np.full(240, 0.5, np.float32), np.zeros(240, np.float32)]))
    levels = builder.finish()
    assert levels[0] == pytest.approx(-6.02, abs=0.01)  # 20 log10(0.5)
    assert levels[1] == segment.DB_FLOOR  # digital silence is floored, not -inf


def test_silent_runs_are_exact():
    env = envelope(("p", 0.3), ("s", 1.0), ("p", 0.05), ("s", 0.2), ("p", 1.0))
    np.testing.assert_array_equal(segment.silent_runs(env, THRESHOLD_DB), [[0, 30], [130, 135], [155, 255]])


def test_pause_cut_is_the_quietest_frame_away_from_the_edges():
    env = envelope(("s", 1.0), ("p", 1.0), ("s", 1.0))
    env[160] = -75.0
    assert segment.pause_cut(env, 100, 200, PAD) == 160
    env[160] = PAUSE_DB
    env[103] = -80.0  # quieter, but a cut there would leave the clip before only 30 ms of pad
    env[120] = -70.0
    assert segment.pause_cut(env, 100, 200, PAD) == 120
    silent = np.full(100, segment.DB_FLOOR, np.float32)  # digital silence: every frame ties
    assert segment.pause_cut(silent, 0, 100, PAD) in (49, 50)


def test_cuts_land_in_pauses_at_exact_positions():
    # 1 s lead-in, 4 s speech, 1 s pause, 5 s speech, 1 s tail: two clips, each padded by 150 ms.
    env = envelope(("p", 1.0), ("s", 4.0), ("p", 1.0), ("s", 5.0), ("p", 1.0))
    plan = segment.plan_clips(env, PARAMS)
    assert spans(plan) == [(100 - PAD, 500 + PAD), (600 - PAD, 1100 + PAD)]
    assert [(c.start_cut, c.end_cut) for c in plan.clips] == [(CUT_PAUSE, CUT_PAUSE)] * 2
    assert plan.dropped_speech_frames == 0
    assert plan.silence_frames == 1200 - plan.clip_frames


def test_speech_right_at_the_file_edges_is_kept_to_the_edge():
    plan = segment.plan_clips(envelope(("s", 4.0), ("p", 1.0), ("s", 4.0)), PARAMS)
    assert spans(plan) == [(0, 400 + PAD), (500 - PAD, 900)]
    assert (plan.clips[0].start_cut, plan.clips[1].end_cut) == (CUT_FILE_EDGE, CUT_FILE_EDGE)


def test_many_short_utterances_are_joined_across_pauses():
    env = envelope(("p", 0.3), *[("s", 1.5), ("p", 0.6)] * 20)
    plan = segment.plan_clips(env, PARAMS)
    assert_within_bounds(plan)
    assert plan.dropped_speech_frames == 0
    assert len(plan.clips) == 10  # pairs: 1.5 + 0.6 + 1.5 + 2 pads = 3.9 s; singles would be 1.8 s
    silent = env < THRESHOLD_DB
    for clip in plan.clips:  # every edge sits in a pause, with speech inside
        assert silent[clip.start] and silent[clip.end - 1]


def test_the_longest_pauses_are_preferred_as_cut_points():
    # Four 2 s utterances; 0.6 / 1.5 / 0.6 s pauses. Pairs are needed (2.3 s alone is under 3 s), and the
    # split must be at the 1.5 s pause, not inside a pair across it.
    env = envelope(("s", 2.0), ("p", 0.6), ("s", 2.0), ("p", 1.5), ("s", 2.0), ("p", 0.6), ("s", 2.0))
    plan = segment.plan_clips(env, PARAMS)
    assert spans(plan) == [(0, 460 + PAD), (610 - PAD, 1070)]


def test_a_long_monologue_with_only_short_pauses_is_split_at_the_longest_short_pause():
    # 18.6 s of speech; internal pauses 0.1, 0.3 and 0.2 s are all under --silence-min-len.
    env = envelope(("s", 3.0), ("p", 0.1), ("s", 6.0), ("p", 0.3), ("s", 5.0), ("p", 0.2), ("s", 4.0))
    plan = segment.plan_clips(env, PARAMS)
    assert_within_bounds(plan)
    assert len(plan.clips) == 2
    cut = plan.clips[0].end
    assert 910 <= cut < 940  # inside the 0.3 s pause at [910, 940)
    assert plan.clips[0].end_cut == plan.clips[1].start_cut == CUT_SHORT_PAUSE


def test_forty_seconds_without_a_pause_is_forced_into_bounded_clips():
    env = envelope(("s", 40.0))
    rng = np.random.default_rng(0)
    env += rng.uniform(0, 3, len(env)).astype(np.float32)
    env[2000] = -35.0  # the quietest frame: still speech (above the threshold), the last resort
    plan = segment.plan_clips(env, PARAMS)
    assert_within_bounds(plan)
    assert sum(c.length for c in plan.clips) == 4000  # nothing lost
    assert 2000 in {c.start for c in plan.clips}
    assert any(CUT_FORCED in (c.start_cut, c.end_cut) for c in plan.clips)


def test_an_isolated_short_utterance_is_dropped_and_counted():
    # 2 s of speech with 3 s of silence either side: 2.3 s padded, under 3 s, too far to join.
    env = envelope(("s", 5.0), ("p", 3.0), ("s", 2.0), ("p", 3.0), ("s", 5.0))
    plan = segment.plan_clips(env, PARAMS)
    assert spans(plan) == [(0, 500 + PAD), (1300 - PAD, 1800)]
    assert plan.dropped_speech_frames == 200 + 2 * PAD


def test_silence_only_gives_no_clips():
    plan = segment.plan_clips(envelope(("p", 10.0)), PARAMS)
    assert plan.clips == [] and plan.silence_frames == 1000 and plan.dropped_speech_frames == 0
    assert segment.plan_clips(np.zeros(0, np.float32), PARAMS).clips == []


segments_strategy = st.lists(
    st.tuples(st.sampled_from(["s", "p"]), st.floats(min_value=0.01, max_value=20.0)), min_size=1, max_size=25
)


@settings(max_examples=60, deadline=None)
@given(parts=segments_strategy, seed=st.integers(0, 2**16))
def test_any_envelope_gives_bounded_clips_and_accounts_for_every_frame(parts, seed):
    env = envelope(*parts)
    if len(env):
        env += np.random.default_rng(seed).uniform(-3, 3, len(env)).astype(np.float32)
    plan = segment.plan_clips(env, PARAMS)
    assert_within_bounds(plan)
    assert plan.clip_frames + plan.dropped_speech_frames + plan.silence_frames == len(env)
    assert plan.silence_frames >= 0
    silent = env < THRESHOLD_DB
    for clip in plan.clips:
        assert not silent[clip.start : clip.end].all()  # every clip holds some sound
        if clip.start_cut == CUT_PAUSE:
            assert silent[clip.start]
        if clip.end_cut == CUT_PAUSE:
            assert silent[clip.end - 1]
