"""Loading Whisper: openai-whisper checkpoints and faster-whisper (CTranslate2) models.

A model is a name Whisper knows (``medium``, ``large-v3``: downloaded on first use into the library's
cache), a local checkpoint file (``.pt``, openai-whisper) or a local CTranslate2 folder (faster-whisper).
``check_model`` answers at once (no loading, no network), so a typo fails before any work; the loaders
raise ``WhisperModelError`` naming the model and the fix (offline: cache it once, or pass a local copy).
The transcribers over these models are ``voicelab.transcribe.backends``'.
"""

from __future__ import annotations

import logging
import os
import pickle
import urllib.error
from collections.abc import Sequence
from pathlib import Path

from voicelab.models import ModelLoadError

logger = logging.getLogger(__name__)

BACKENDS = ("openai-whisper", "faster-whisper")
COMPUTE_TYPES = ("auto", "float32", "float16", "int8", "int8_float16")
FASTER_WHISPER_MISSING = (
    "--backend faster-whisper needs the optional extra: pip install -e '.[faster-whisper]'"
)


class WhisperModelError(ModelLoadError):
    """A Whisper model that cannot be named or loaded (unknown name, not cached offline, bad file, backend
    not installed); the message names it and what to do."""


def resolve_device(requested: str, cuda_available: bool) -> str:
    """``requested`` unless it asks for CUDA on a machine without it: then one warning and ``"cpu"``."""
    if requested.startswith("cuda") and not cuda_available:
        logger.warning(
            "--device %s: CUDA is not available here, using the CPU (fp32, much slower)", requested
        )
        return "cpu"
    return requested


def openai_model_names() -> list[str]:
    import whisper

    names = list(whisper.available_models())
    return names if "large" in names else [*names, "large"]


def _unknown_model(name: str, names: Sequence[str], local_kind: str) -> WhisperModelError:
    return WhisperModelError(
        f"unknown Whisper model {name!r}: use one of {', '.join(names)}, or a path to a {local_kind}"
    )


def check_model(backend: str, name: str) -> None:
    """Raise ``WhisperModelError`` (listing valid names) unless ``name`` can name a model for ``backend``.

    Cheap (no loading, no network): run before anything else so a typo fails at once, even on a resume
    that has nothing left to transcribe.
    """
    path = Path(name).expanduser()
    if backend == "openai-whisper":
        if name in openai_model_names() or path.is_file():
            return
        if path.is_dir():
            raise WhisperModelError(
                f"{path}: is a folder; openai-whisper needs a checkpoint file (.pt). "
                "A CTranslate2 model folder works with --backend faster-whisper"
            )
        raise _unknown_model(name, openai_model_names(), "local checkpoint file")
    try:
        from faster_whisper import available_models
    except ImportError as e:
        raise WhisperModelError(FASTER_WHISPER_MISSING) from e
    if path.is_dir() or name in available_models() or ("/" in name and not path.exists()):
        return
    raise _unknown_model(name, available_models(), "local CTranslate2 model folder")


def load_openai_whisper(name: str, device: str, flag: str = "--model"):
    """``whisper.load_model`` on a model name (downloaded on first use) or a local checkpoint file.
    ``flag``: the command's flag for the model, named in the offline hint."""
    import whisper

    names = openai_model_names()
    if name in names:
        try:
            return whisper.load_model(name, device=device)
        except (urllib.error.URLError, OSError) as e:
            cache = Path(os.getenv("XDG_CACHE_HOME", Path.home() / ".cache")) / "whisper"
            checkpoint = Path(whisper._MODELS[name]).name
            fetch = f'.venv/bin/python -c "import whisper; whisper.load_model({name!r})"'
            raise WhisperModelError(
                f"Whisper model {name!r} is not in the cache ({cache}) and cannot be downloaded ({e}). "
                f"On a machine with network, cache it with {fetch}, then copy {checkpoint} from its "
                f"~/.cache/whisper/ into {cache} here, or pass {flag} /path/to/{checkpoint}"
            ) from e
    check_model("openai-whisper", name)
    path = Path(name).expanduser()
    try:
        return whisper.load_model(str(path), device=device)
    except (RuntimeError, KeyError, TypeError, EOFError, OSError, pickle.UnpicklingError) as e:
        raise WhisperModelError(f"{path}: not a loadable Whisper checkpoint ({e})") from e


def load_faster_whisper(name: str, device: str, compute_type: str, threads: int = 0, flag: str = "--model"):
    """faster-whisper ``WhisperModel`` from a size name, a Hugging Face repo id or a local CTranslate2 folder."""
    try:
        from faster_whisper import WhisperModel
    except ImportError as e:
        raise WhisperModelError(FASTER_WHISPER_MISSING) from e
    check_model("faster-whisper", name)
    path = Path(name).expanduser()
    source = str(path) if path.is_dir() else name
    if compute_type == "auto":
        compute_type = "float16" if device.startswith("cuda") else "float32"
    device_name, _, index = device.partition(":")
    try:
        return WhisperModel(
            source,
            device=device_name,
            device_index=int(index or 0),
            compute_type=compute_type,
            cpu_threads=threads,
        )
    except OSError as e:  # huggingface_hub's offline and HTTP errors are OSErrors
        raise WhisperModelError(
            f"faster-whisper model {name!r} is not in the Hugging Face cache (~/.cache/huggingface/hub) and "
            f"cannot be downloaded ({e}). Download it on a machine with network, or pass {flag} "
            "/path/to/ctranslate2-model-folder"
        ) from e
    except (RuntimeError, ValueError) as e:
        raise WhisperModelError(
            f"faster-whisper cannot load {name!r} on {device} as {compute_type} ({e})"
        ) from e


def load_whisper(
    backend: str,
    name: str,
    *,
    device: str,
    compute_type: str = "auto",
    threads: int = 0,
    flag: str = "--model",
):
    """``(model, device)`` for ``backend``; ``device`` falls back to the CPU (with a warning) without CUDA.

    ``threads`` > 0 caps CPU threads (torch's, process-wide, for openai-whisper; CTranslate2's for
    faster-whisper): more threads than free cores makes CPU decoding many times slower, not faster.
    """
    if backend == "openai-whisper":
        import torch

        if threads > 0:
            torch.set_num_threads(threads)
        device = resolve_device(device, torch.cuda.is_available())
        return load_openai_whisper(name, device, flag), device
    if backend == "faster-whisper":
        try:
            import ctranslate2
        except ImportError as e:
            raise WhisperModelError(FASTER_WHISPER_MISSING) from e
        device = resolve_device(device, ctranslate2.get_cuda_device_count() > 0)
        return load_faster_whisper(name, device, compute_type, threads, flag), device
    raise ValueError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
