"""Session fixtures: tiny random models built offline, once per test session (never committed)."""

from __future__ import annotations

import pytest

from voicelab import testing


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def tiny_orpheus_dir(tmp_path_factory):
    """Folder with a 2-layer Orpheus-layout Llama and its tokenizer (special tokens at real ids)."""
    return testing.build_tiny_orpheus(tmp_path_factory.mktemp("tiny_orpheus"))


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_orpheus_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_orpheus_dir)


@pytest.fixture(scope="session")
def tiny_snac_dir(tmp_path_factory):
    """Random-weight SNAC with the 24 kHz strides and small widths (fast)."""
    return testing.build_tiny_snac(tmp_path_factory.mktemp("tiny_snac"))


@pytest.fixture(scope="session")
def real_size_snac_dir(tmp_path_factory):
    """Random-weight SNAC with the real snac_24khz configuration (same compute as the real model)."""
    return testing.build_tiny_snac(tmp_path_factory.mktemp("real_snac"), real_size=True)


@pytest.fixture(scope="session")
def tiny_whisper_path(tmp_path_factory):
    """Random 2-layer Whisper checkpoint file for ``whisper.load_model(path)``."""
    return testing.build_tiny_whisper(tmp_path_factory.mktemp("tiny_whisper") / "tiny-random.pt")


@pytest.fixture(scope="session")
def speech_dir(tmp_path_factory):
    """A folder for espeak-ng WAVs shared by the session."""
    if not testing.espeak_available():
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    return tmp_path_factory.mktemp("speech")
