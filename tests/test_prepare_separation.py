"""prepare-audio --separate-vocals: the vocals stem of each recording (demucs), offline.

The end-to-end run loads a small random Hybrid Transformer Demucs from a local folder, through demucs'
own ``get_model(name, repo=dir)`` as users load ``htdemucs``: its stems are noise, so it shows the path
runs and what is reported, not separation. How the recording is cut into chunks, resampled to the model's
rate and back, normalised and restored, and which stem is kept is checked with a stand-in model whose
vocals are half the mix (so the expected output is known).
"""

from __future__ import annotations

import numpy as np
import pytest

from voicelab import separation, testing
from voicelab.audio import read_audio
from voicelab.cli import prepare_audio

pytest.importorskip("demucs")


def half_vocals_model():
    """Stands in for a demucs model: four stems at 44.1 kHz stereo, the vocals half the (normalised) mix,
    the others zero."""
    import torch

    class HalfVocals(torch.nn.Module):
        sources = ("drums", "bass", "other", "vocals")
        samplerate, audio_channels, segment = 44_100, 2, 4.0

        def forward(self, mix):
            stems = torch.zeros(mix.shape[0], len(self.sources), *mix.shape[1:])
            stems[:, self.sources.index("vocals")] = 0.5 * mix
            return stems

    return HalfVocals().eval()


def test_the_vocals_stem_is_written_chunk_by_chunk_at_the_recordings_rate(speech_dir, monkeypatch):
    path = testing.speak(
        ["One two three four five six seven eight nine ten.", 0.3] * 2, speech_dir / "sep.wav"
    )
    audio, rate = read_audio(path, 24_000)
    audio = audio + 0.01  # an offset, restored after the model like demucs' own command restores it
    monkeypatch.setattr(separation, "CHUNK_S", 2.0)  # several chunks, each with context either side
    out: list[np.ndarray] = []
    rec = separation.Recording(lambda a, b: audio[a:b], len(audio), rate)
    separation.separate_vocals(half_vocals_model(), rec, out.append)
    vocals = np.concatenate(out)
    assert len(out) == int(np.ceil(len(audio) / (2.0 * rate))) and len(vocals) == len(audio)
    expected = 0.5 * (audio - audio.mean()) + audio.mean()
    np.testing.assert_allclose(vocals, expected, atol=2e-3)  # the 24 -> 44.1 -> 24 kHz round trip


def test_separate_vocals_runs_offline_on_a_local_model(tmp_path, capsys):
    from voicelab.testing import conversations as cv

    if not testing.espeak_available():
        pytest.skip("espeak-ng is not installed")
    repo = tmp_path / "demucs"
    testing.build_tiny_demucs(repo)
    lines = [(cv.TARGET_VOICE, cv.TARGET_LINES[0]), 0.4, (cv.TARGET_VOICE, cv.TARGET_LINES[1])]
    take = cv.build_recording(lines, tmp_path / "raw" / "over_music.wav", music_bed_db=15.0).path
    args = [str(take), str(tmp_path / "out"), "--separate-vocals", "--demucs-repo", str(repo)]
    assert prepare_audio.main([*args, "--demucs-model", testing.TINY_DEMUCS_NAME]) == 0
    out = capsys.readouterr().out
    assert f"vocals separated (demucs {testing.TINY_DEMUCS_NAME}) in 1 file(s)" in out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--demucs-repo", "no_such_folder"], "no such folder"),
        (["--demucs-model", "absent"], "could not be loaded"),
    ],
)
def test_a_separation_model_that_cannot_load_is_one_line_and_exit_2(
    tmp_path, speech_dir, capsys, extra, message
):
    repo = tmp_path / "demucs"
    testing.build_tiny_demucs(repo)
    source = testing.speak(["Hello there."], speech_dir / "sep_bad.wav")
    extra = [e if e != "no_such_folder" else str(tmp_path / e) for e in extra]
    args = [str(source), str(tmp_path / "out"), "--separate-vocals", "--demucs-repo", str(repo), *extra]
    assert prepare_audio.main(args) == 2
    err = capsys.readouterr().err
    assert message in err and not (tmp_path / "out").exists()
