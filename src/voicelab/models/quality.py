"""Loading the audio-quality models: Resemblyzer's GE2E speaker encoder, DNSMOS P.835 and Silero VAD.

All ship their weights inside their wheels (``resemblyzer``, ``speechmos``, ``silero-vad``), so nothing is
downloaded; each is loaded once per process and reused (``speaker_encoder``, ``dnsmos_model``,
``vad_model``). The speaker encoder
is built here from Resemblyzer's weights rather than through ``resemblyzer.VoiceEncoder``, whose package
import needs ``webrtcvad`` -> ``pkg_resources``, which current setuptools no longer ships; on the CPU it
runs in numpy (the weights read without torch), so prepare-audio's voice choice never pays torch's
import. DNSMOS runs in an ONNX Runtime session of its own options. What the models measure is
``voicelab.quality``'s (the VAD's, ``voicelab.vocal_events``').
"""

from __future__ import annotations

import collections
import importlib.util
import pickle
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


# ---------------------------------------------------------------------------------- speaker encoder

_TORCH_CLASSES = {("torch", "FloatStorage"), ("torch._utils", "_rebuild_tensor_v2")}
STORAGE_SIZE_BYTES = 8
"""Each storage of a legacy torch file is its element count (int64, little-endian) and then its bytes."""


class _LegacyTorchFile(pickle.Unpickler):
    """Reads the tensors of a file written by ``torch.save`` in the legacy (pre-1.6, non-zip) format, as
    Resemblyzer's ``pretrained.pt`` is, without importing torch (whose import costs ~2 s of CPU, more than
    prepare-audio spends on an hour of audio otherwise). Only float32 storages, ``OrderedDict`` and
    ``torch._utils._rebuild_tensor_v2`` are accepted: anything else in the file is refused, as
    ``torch.load(weights_only=True)`` refuses it."""

    def __init__(self, f):
        super().__init__(f)
        self.storages: dict[str, int] = {}

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) not in _TORCH_CLASSES:
            raise pickle.UnpicklingError(f"{module}.{name} is not a float32 tensor")
        return _tensor_stub if name == "_rebuild_tensor_v2" else name

    def persistent_load(self, pid):
        _kind, storage_type, key, _location, size, *_view = pid
        if storage_type != "FloatStorage":
            raise pickle.UnpicklingError(f"storage of {storage_type}, not float32")
        self.storages[key] = int(size)
        return key


def _tensor_stub(storage: str, offset: int, size, stride, *_rest) -> tuple:
    return storage, int(offset), tuple(size), tuple(stride)


def _read_legacy_torch_file(path: Path) -> dict[str, Any]:
    """The object ``torch.save`` wrote to ``path`` (legacy format), its tensors as float32 numpy arrays."""
    import numpy as np

    with path.open("rb") as f:
        for _header in range(3):  # magic number, protocol version, system info
            pickle.load(f)
        reader = _LegacyTorchFile(f)
        obj = reader.load()
        data = {}
        for key in pickle.load(f):
            count = int.from_bytes(f.read(STORAGE_SIZE_BYTES), "little")
            data[key] = np.frombuffer(f.read(count * 4), dtype="<f4")

    def build(value):
        if isinstance(value, dict):
            return {k: build(v) for k, v in value.items()}
        if isinstance(value, tuple) and len(value) == 4 and value[0] in data:
            storage, offset, size, stride = value
            flat = data[storage][offset:]
            return np.lib.stride_tricks.as_strided(flat, size, [4 * s for s in stride]).astype(np.float32)
        return value

    return build(obj)


def resemblyzer_weights() -> dict[str, Any]:
    """The encoder's weights from Resemblyzer's ``pretrained.pt`` (``lstm.*`` and ``linear.*``, numpy)."""
    path = _package_file("resemblyzer", RESEMBLYZER_WEIGHTS)
    try:
        state = _read_legacy_torch_file(path)["model_state"]
    except (pickle.UnpicklingError, KeyError, EOFError, ValueError, TypeError) as e:
        raise QualityModelError(
            f"{path}: not Resemblyzer's weights as expected ({e}); reinstall resemblyzer"
        ) from e
    return {k: v for k, v in state.items() if k.startswith(("lstm.", "linear."))}


class NumpySpeakerEncoder:
    """Resemblyzer's GE2E (a 3-layer LSTM and a projection) in numpy: the same numbers as the torch
    module to float32 rounding (``tests/test_quality.py``), at ~1.3x its CPU time on this machine, without
    torch's ~2 s import. Safe to call from several threads (nothing in it changes after loading)."""

    def __init__(self, weights: dict[str, Any]):
        import numpy as np

        hidden = ENCODER_HIDDEN
        # sigmoid(x) = (1 + tanh(x / 2)) / 2: the input, forget and output gates' rows are halved, so one
        # tanh over all four gates replaces three sigmoids and a tanh (PyTorch's gate order: i, f, g, o).
        half = np.ones(4 * hidden, np.float32)
        half[: 2 * hidden] = half[3 * hidden :] = 0.5
        self.layers = []
        for layer in range(ENCODER_LAYERS):
            w_in, w_rec = weights[f"lstm.weight_ih_l{layer}"], weights[f"lstm.weight_hh_l{layer}"]
            bias = weights[f"lstm.bias_ih_l{layer}"] + weights[f"lstm.bias_hh_l{layer}"]
            self.layers.append(
                (
                    np.ascontiguousarray((w_in * half[:, None]).T),
                    np.ascontiguousarray((w_rec * half[:, None]).T),
                    (bias * half).astype(np.float32),
                )
            )
        self.linear_t = np.ascontiguousarray(weights["linear.weight"].T)
        self.linear_bias = weights["linear.bias"]

    def __call__(self, mels, lengths=None):
        """``(B, EMBEDDING_DIM)`` unit voice prints of ``(B, T, MEL_CHANNELS)`` float32 mels; ``lengths``:
        each row's own frames (padded at the end), its print taken after its last one. Rows run longest
        first, and each step computes only the rows still running: padding costs nothing."""
        import numpy as np

        batch, frames, _ = mels.shape
        lengths = np.full(batch, frames) if lengths is None else np.asarray(lengths)
        order = np.argsort(-lengths, kind="stable")
        lengths = lengths[order]
        running = np.searchsorted(-lengths, -np.arange(frames), side="left")  # rows longer than t, per t
        seq = np.ascontiguousarray(np.asarray(mels, np.float32)[order].transpose(1, 0, 2))  # time-major
        for w_in, w_rec, bias in self.layers:
            seq = self._layer(seq, running, w_in, w_rec, bias)
        last = np.empty((batch, seq.shape[2]), np.float32)
        last[order] = seq[lengths - 1, np.arange(batch)]
        raw = np.maximum(last @ self.linear_t + self.linear_bias, 0.0)
        norms = np.maximum(np.linalg.norm(raw, axis=1, keepdims=True), 1e-12)
        return (raw / norms).astype(np.float32)

    @staticmethod
    def _layer(seq, running, w_in, w_rec, bias):
        """One LSTM layer over time-major ``seq``; at step ``t`` only the first ``running[t]`` rows."""
        import numpy as np

        frames, batch, _ = seq.shape
        hidden = w_rec.shape[0]
        gates_in = (seq.reshape(frames * batch, -1) @ w_in + bias).reshape(frames, batch, 4 * hidden)
        h = np.zeros((batch, hidden), np.float32)
        c = np.zeros((batch, hidden), np.float32)
        out = np.zeros((frames, batch, hidden), np.float32)
        gates_all = np.empty((batch, 4 * hidden), np.float32)
        scratch_all = np.empty((batch, hidden), np.float32)
        i, f, g, o = (slice(k * hidden, (k + 1) * hidden) for k in range(4))
        for t in range(frames):
            n = running[t]
            gates, scratch, h_t, c_t = gates_all[:n], scratch_all[:n], h[:n], c[:n]
            np.matmul(h_t, w_rec, out=gates)
            gates += gates_in[t, :n]
            np.tanh(gates, out=gates)
            for gate in (i, f, o):  # sigmoid from the halved tanh
                gates[:, gate] += 1.0
                gates[:, gate] *= 0.5
            c_t *= gates[:, f]
            np.multiply(gates[:, i], gates[:, g], out=scratch)
            c_t += scratch
            np.tanh(c_t, out=scratch)
            np.multiply(gates[:, o], scratch, out=h_t)
            out[t, :n] = h_t
        return out


def _build_torch_encoder(device: str):
    import torch
    from torch import nn

    class SpeakerEncoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(MEL_CHANNELS, ENCODER_HIDDEN, ENCODER_LAYERS, batch_first=True)
            self.linear = nn.Linear(ENCODER_HIDDEN, EMBEDDING_DIM)

        def forward(self, mels, lengths):  # (B, frames, MEL_CHANNELS) -> (B, EMBEDDING_DIM), L2-normed
            out, _ = self.lstm(mels)
            last = out[torch.arange(len(lengths)), lengths - 1]  # each row's own last frame
            raw = torch.relu(self.linear(last))
            return raw / raw.norm(dim=1, keepdim=True).clamp_min(1e-12)

    model = SpeakerEncoder()
    model.load_state_dict({k: torch.from_numpy(v) for k, v in resemblyzer_weights().items()})
    model = model.eval().to(device)

    def encode(mels, lengths=None):
        import numpy as np

        lengths = np.full(len(mels), mels.shape[1]) if lengths is None else np.asarray(lengths)
        with torch.inference_mode():
            batch = torch.from_numpy(np.ascontiguousarray(mels, np.float32)).to(device)
            return model(batch, torch.from_numpy(lengths).to(device)).float().cpu().numpy()

    encode.module = model
    return encode


def speaker_encoder(device: str = "cpu"):
    """The GE2E speaker encoder, loaded once per process: ``encoder(mels, lengths=None)`` gives ``(B, 256)``
    unit voice prints of ``(B, T, MEL_CHANNELS)`` float32 mels. On the CPU it is ``NumpySpeakerEncoder``
    (no torch import); on another device (``cuda``) the same model as a torch module there."""
    if device == "cpu":
        return _cached(("resemblyzer", device), lambda: NumpySpeakerEncoder(resemblyzer_weights()))
    return _cached(("resemblyzer", device), lambda: _build_torch_encoder(device))


# ------------------------------------------------------------------------------------------- DNSMOS


DNSMOS_THREADS = 1
"""ONNX Runtime threads per DNSMOS run. The model's cost is its convolutions over a 9 s window (~14 GMAC,
0.4-0.5 s of CPU here, docs/benchmarks.md), the same whatever the threads: transcribe runs the measures on
worker threads beside Whisper, one core each, and a second ONNX thread would only take Whisper's core."""
DNSMOS_INPUT = "input_1"


class DnsmosModel:
    """DNSMOS P.835 (``sig_bak_ovr.onnx`` from the ``speechmos`` wheel) in an ONNX Runtime session of our
    own options, and speechmos' calibration of its raw outputs. speechmos' ``DNSMOS`` also loads the P.808
    model, which the measures do not use. Safe to call from several threads (ONNX Runtime's ``run``)."""

    def __init__(self):
        import onnxruntime as ort

        try:
            from speechmos.dnsmos import DNSMOS
        except ImportError as e:
            raise QualityModelError(f"DNSMOS needs the speechmos package: pip install speechmos ({e})") from e
        options = ort.SessionOptions()
        options.intra_op_num_threads = DNSMOS_THREADS
        options.inter_op_num_threads = DNSMOS_THREADS
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(
            str(_package_file("speechmos", *DNSMOS_MODEL)), options, providers=["CPUExecutionProvider"]
        )
        self._calibrate = DNSMOS.get_polyfit_val  # uses no state of its instance

    def scores(self, windows):
        """``(N, 3)`` float64 calibrated SIG, BAK, OVRL of ``(N, samples)`` float32 9.01 s windows."""
        import numpy as np

        raw = self.session.run(None, {DNSMOS_INPUT: np.ascontiguousarray(windows, np.float32)})[0]
        return np.array([self._calibrate(None, *r, False) for r in raw], np.float64)


def dnsmos_model() -> DnsmosModel:
    """DNSMOS P.835, loaded once per process."""
    return _cached(("dnsmos",), DnsmosModel)


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
