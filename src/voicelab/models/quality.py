"""Loading the audio-quality models: Resemblyzer's GE2E speaker encoder, DNSMOS P.835 and Silero VAD.

All ship their weights inside their wheels (``resemblyzer``, ``speechmos``, ``silero-vad``), so nothing is
downloaded; each is loaded once per process and reused (``speaker_encoder``, ``dnsmos_model``,
``vad_model``). The speaker encoder
is built here from Resemblyzer's weights rather than through ``resemblyzer.VoiceEncoder``, whose package
import needs ``webrtcvad`` -> ``pkg_resources``, which current setuptools no longer ships. What the models
measure is ``voicelab.quality``'s (the VAD's, ``voicelab.vocal_events``').
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Resemblyzer's GE2E encoder (its hparams): 40 mel channels in, a 3-layer 256-unit LSTM and a 256-d
# projection out.
MEL_CHANNELS = 40
ENCODER_HIDDEN = 256
ENCODER_LAYERS = 3
EMBEDDING_DIM = 256
RESEMBLYZER_WEIGHTS = "pretrained.pt"
DNSMOS_MODEL = ("dnsmos_models", "sig_bak_ovr.onnx")
DNSMOS_P808_MODEL = ("dnsmos_models", "model_v8.onnx")

_models: dict[tuple, Any] = {}
_models_lock = threading.Lock()


class QualityModelError(RuntimeError):
    """A quality model's package or weights are missing; the message names the package to install."""


def _cached(key: tuple, build: Callable[[], Any]) -> Any:
    """The model stored under ``key``, built once per process."""
    with _models_lock:
        if key not in _models:
            _models[key] = build()
        return _models[key]


def _package_file(package: str, *parts: str) -> Path:
    """A data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise QualityModelError(f"the {package!r} package is not installed: pip install {package}")
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    if not path.is_file():
        raise QualityModelError(f"{path}: missing from the {package!r} package; reinstall it")
    return path


def _build_encoder(device: str):
    import torch
    from torch import nn

    class SpeakerEncoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(MEL_CHANNELS, ENCODER_HIDDEN, ENCODER_LAYERS, batch_first=True)
            self.linear = nn.Linear(ENCODER_HIDDEN, EMBEDDING_DIM)

        def forward(self, mels):  # (B, frames, MEL_CHANNELS) -> (B, EMBEDDING_DIM), L2-normed
            _, (hidden, _) = self.lstm(mels)
            raw = torch.relu(self.linear(hidden[-1]))
            return raw / raw.norm(dim=1, keepdim=True).clamp_min(1e-12)

    checkpoint = torch.load(
        _package_file("resemblyzer", RESEMBLYZER_WEIGHTS), map_location="cpu", weights_only=True
    )
    state = {k: v for k, v in checkpoint["model_state"].items() if k.startswith(("lstm.", "linear."))}
    model = SpeakerEncoder()
    model.load_state_dict(state)
    return model.eval().to(device)


def speaker_encoder(device: str = "cpu"):
    """The GE2E speaker encoder on ``device`` (a torch module in eval mode), loaded once per process."""
    return _cached(("resemblyzer", device), lambda: _build_encoder(device))


def _build_dnsmos():
    try:
        from speechmos.dnsmos import DNSMOS
    except ImportError as e:
        raise QualityModelError(f"DNSMOS needs the speechmos package: pip install speechmos ({e})") from e
    return DNSMOS(
        str(_package_file("speechmos", *DNSMOS_MODEL)), str(_package_file("speechmos", *DNSMOS_P808_MODEL))
    )


def dnsmos_model():
    """speechmos' DNSMOS (its ONNX sessions), loaded once per process."""
    return _cached(("dnsmos",), _build_dnsmos)


def _build_vad():
    try:
        from silero_vad import load_silero_vad
    except ImportError as e:
        raise QualityModelError(
            f"Silero VAD needs the silero-vad package: pip install silero-vad ({e})"
        ) from e
    return load_silero_vad(onnx=True)


def vad_model():
    """Silero VAD through onnxruntime on the CPU (a speech probability per 32 ms window), loaded once per
    process. It keeps state between windows: callers score one clip at a time and reset it before each
    (``voicelab.vocal_events`` holds a lock around it)."""
    return _cached(("silero-vad",), _build_vad)
