"""The one place models are loaded: the Orpheus tokenizer and base model and the SNAC codec (here),
Whisper (``voicelab.models.whisper``), and the speaker encoder and DNSMOS (``voicelab.models.quality``).

Training (``training/build.py``), the embedded engine (``engine/local.py``), the streaming decoder
(``engine/decoder.py``) and the server's start-up (``engine/stack.py``) all load through these functions,
so each runs the same Orpheus contract checks (``orpheus.py``) and fails with the same ``ModelLoadError``:

* the tokenizer spells the special tokens the contract relies on at the contract's ids (a Llama tokenizer
  without Orpheus' added tokens builds prompts the model never saw, and every voice is noise);
* the model's vocabulary is ``orpheus.VOCAB_SIZE`` (the adapter never resizes it: vLLM would refuse it);
* SNAC runs at ``orpheus.SAMPLE_RATE`` (the 24 kHz codec Orpheus speaks).

Each model is a hub id or a local folder. Offline, a hub id cannot be fetched: the error says how to
download it once and pass the folder instead.

Nothing heavy is imported here: torch, transformers and snac load inside the functions.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from voicelab import orpheus
from voicelab.errors import UsageError
from voicelab.voice import DEFAULT_BASE_MODEL, DEFAULT_SNAC_MODEL

logger = logging.getLogger(__name__)

BASE_MODEL_SETTING = "train-lora --base-model / VOICELAB_BASE_MODEL"
"""Where a user chooses the base model: the training flag and the server's setting."""
SNAC_MODEL_SETTING = "train-lora --snac-model / VOICELAB_SNAC_MODEL"
"""Where a user chooses the SNAC codec: the training flag and the server's setting."""
SNAC_CONFIG_FILE = "config.json"
SNAC_WEIGHTS_FILE = "pytorch_model.bin"
SNAC_CHECKPOINT_FILES = (SNAC_CONFIG_FILE, SNAC_WEIGHTS_FILE)
"""What ``SNAC.from_pretrained`` reads from a folder or a hub repository."""

CONTRACT_TOKENS = {
    "<|begin_of_text|>": orpheus.BEGIN_OF_TEXT,
    "<|eot_id|>": orpheus.END_OF_TEXT,
    orpheus.token_spelling(orpheus.START_OF_HUMAN): orpheus.START_OF_HUMAN,
    orpheus.token_spelling(orpheus.END_OF_SPEECH): orpheus.END_OF_SPEECH,
    orpheus.token_spelling(orpheus.AUDIO_TOKEN_BASE): orpheus.AUDIO_TOKEN_BASE,
}
"""Spellings a real Orpheus tokenizer maps to the contract's ids: the prompt's markers, the stop token
and the first audio token."""

PRECISION_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
"""Training's precision names and the torch dtypes they load the base model in (fp16 training keeps fp16
base weights, for memory; peft keeps the adapter in fp32 for the loss scaler)."""


class ModelLoadError(UsageError):
    """A model that cannot be loaded (offline without a local copy, a bad folder) or that is not the
    model Orpheus needs; the message names the model and the fix."""


def looks_like_local_path(value: str | Path) -> bool:
    """True for a local model (existing, or written as a path: a folder, or a Whisper ``.pt`` checkpoint)
    rather than a hub id ``owner/name`` or a model name such as ``large-v3``."""
    text = str(value)
    if Path(text).expanduser().exists():
        return True
    return text.startswith(("/", ".", "~")) or text.count("/") > 1 or "\\" in text or text.endswith(".pt")


SHOWN_FILES = 4
"""A hint names this many files of a folder that holds the wrong thing."""


def offline_hint(model_id: str | Path, setting: str, holding: str, hub_id: str) -> str:
    """The fix for a model that cannot be loaded: a local folder, downloaded once with the hub CLI.

    ``hub_id``: what to download when ``model_id`` is itself a folder (the project's default model). A
    folder that already holds files (another model: the Orpheus folder given as SNAC) is never offered as
    the download's destination; the hint names what it holds and proposes a folder of its own."""
    folder = Path(str(model_id)).expanduser()
    if folder.is_dir() and any(folder.iterdir()):
        held = sorted(p.name for p in folder.iterdir())
        listed = ", ".join(held[:SHOWN_FILES]) + (", ..." if len(held) > SHOWN_FILES else "")
        return (
            f"{model_id} holds {listed}, not {holding}: pass a folder holding it ({setting}); "
            "download one once on a machine with network, into a folder of its "
            f"own: `.venv/bin/hf download {hub_id} --local-dir models/{hub_id.rsplit('/', 1)[-1]}`"
        )
    if looks_like_local_path(model_id):
        return (
            f"pass a folder holding {holding} ({setting}); download one once on a machine with network: "
            f"`.venv/bin/hf download {hub_id} --local-dir {model_id}`"
        )
    return (
        f"offline, pass a local folder holding {holding} ({setting}); download it once on a machine "
        f"with network: `.venv/bin/hf download {model_id} --local-dir DIR`"
    )


_BASE_MODEL_HINT = (BASE_MODEL_SETTING, "the Orpheus checkpoint and tokenizer", DEFAULT_BASE_MODEL)
_SNAC_HINT = (
    SNAC_MODEL_SETTING,
    f"the SNAC codec ({' and '.join(SNAC_CHECKPOINT_FILES)})",
    DEFAULT_SNAC_MODEL,
)


BASE_MODEL_CONFIG_FILE = "config.json"
"""What every transformers checkpoint holds, and where its vocabulary size is written."""


def check_base_model_source(base_model: str | Path) -> None:
    """Raise ``ModelLoadError`` when ``base_model`` surely cannot be loaded, before anything is loaded.

    One message for one mistake, whichever step meets it (the server's start-up, ``make vllm``,
    train-lora, evaluate): a path that is not there or holds something else, a hub id while
    ``HF_HUB_OFFLINE`` is set that is not in the hub cache, or a checkpoint whose vocabulary is not
    Orpheus'. A hub id that may still be downloaded passes (only the hub can tell). Reads one JSON file;
    never the network."""
    config = _model_files(base_model, "base model", (BASE_MODEL_CONFIG_FILE,), _BASE_MODEL_HINT)
    if config is None:
        return
    try:
        vocab = json.loads(config[0].read_text(encoding="utf-8")).get("vocab_size")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as e:
        raise ModelLoadError(
            f"cannot load the base model {str(base_model)!r}: its {BASE_MODEL_CONFIG_FILE} is unreadable "
            f"({e}); " + offline_hint(base_model, *_BASE_MODEL_HINT)
        ) from e
    if isinstance(vocab, int) and vocab != orpheus.VOCAB_SIZE:
        raise _not_orpheus(
            base_model, f"its vocabulary has {vocab} tokens, not Orpheus' {orpheus.VOCAB_SIZE}"
        )


def check_snac_source(model_id: str | Path) -> None:
    """``check_base_model_source`` for the SNAC codec: its two files where it is a folder or cached."""
    _model_files(model_id, "SNAC model", SNAC_CHECKPOINT_FILES, _SNAC_HINT)


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` as the hub library read it: no download will be tried."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _model_files(
    model_id: str | Path, kind: str, files: tuple[str, ...], hint: tuple[str, str, str]
) -> list[Path] | None:
    """``files`` of a local folder or a cached hub id; None for a hub id the hub may still provide."""
    text = str(model_id)
    folder = Path(text).expanduser()
    if folder.is_dir():
        found = [folder / name for name in files]
        if all(f.is_file() for f in found):
            return found
        empty = not any(folder.iterdir())
        what = (
            "an empty folder" if empty else f"missing {', '.join(f.name for f in found if not f.is_file())}"
        )
        raise ModelLoadError(f"cannot load the {kind} {text!r} ({what}); " + offline_hint(text, *hint))
    if looks_like_local_path(text):
        what = "a file, not a folder" if folder.exists() else "no such folder"
        raise ModelLoadError(f"cannot load the {kind} {text!r} ({what}); " + offline_hint(text, *hint))
    cached = _cached_hub_files(text, files)
    if cached is None:
        why = "HF_HUB_OFFLINE is set" if hub_offline() else _hub_unreachable()
        if why:
            raise ModelLoadError(
                f"cannot load the {kind} {text!r} (not in the hub cache, and {why}); "
                + offline_hint(text, *hint)
            )
    return cached


def _hub_unreachable() -> str | None:
    """Why a download from the hub cannot even start (its host does not resolve: no network), or None.

    A name lookup, no request: it answers at once where a download would retry for a minute. Behind a
    proxy the hub's name need not resolve locally, so no verdict is given there."""
    import socket
    import urllib.parse
    import urllib.request

    from huggingface_hub import constants

    if urllib.request.getproxies():
        return None
    host = urllib.parse.urlparse(constants.ENDPOINT).hostname or ""
    try:
        socket.getaddrinfo(host, None)
    except (OSError, UnicodeError):
        return f"the hub ({host}) cannot be reached: no network?"
    return None


def _cached_hub_files(repo_id: str, files: tuple[str, ...]) -> list[Path] | None:
    """The hub cache's copies of ``files`` of ``repo_id`` (never the network); None unless all are there."""
    from huggingface_hub import try_to_load_from_cache

    found = []
    for name in files:
        try:
            path = try_to_load_from_cache(repo_id, name)
        except ValueError:  # not a valid repository id
            return None
        if not isinstance(path, str):  # None (not cached) or "known to be absent"
            return None
        found.append(Path(path))
    return found


def _cannot_load(kind: str, model_id: str | Path, error: Exception, hint: tuple[str, str, str]) -> str:
    return f"cannot load the {kind} {str(model_id)!r} ({type(error).__name__}: {error}); " + offline_hint(
        model_id, *hint
    )


def _not_orpheus(base_model: str | Path, what: str) -> ModelLoadError:
    """The one contract-violation error, the same in training, the local engine and the server."""
    return ModelLoadError(
        f"{str(base_model)!r} is not an Orpheus checkpoint: {what}, so every voice would be noise; "
        f"pass an Orpheus checkpoint ({BASE_MODEL_SETTING}, default {DEFAULT_BASE_MODEL})"
    )


def check_tokenizer(tokenizer, base_model: str | Path) -> None:
    """Raise ``ModelLoadError`` unless ``tokenizer`` spells ``CONTRACT_TOKENS`` at the contract's ids."""
    wrong = {}
    for spelling, expected in CONTRACT_TOKENS.items():
        got = tokenizer.convert_tokens_to_ids(spelling)
        if got != expected:
            wrong[spelling] = got
    if wrong:
        listed = "; ".join(f"{s} is id {got}, not {CONTRACT_TOKENS[s]}" for s, got in wrong.items())
        raise _not_orpheus(
            base_model, f"its tokenizer puts the Orpheus special tokens at other ids ({listed})"
        )


def load_tokenizer(base_model: str | Path):
    """The base model's tokenizer (``AutoTokenizer.from_pretrained``), checked against the contract."""
    from transformers import AutoTokenizer

    check_base_model_source(base_model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(base_model))
    except (OSError, ValueError) as e:
        raise ModelLoadError(_cannot_load("base model", base_model, e, _BASE_MODEL_HINT)) from e
    check_tokenizer(tokenizer, base_model)
    return tokenizer


def resolve_dtype(dtype=None, device: str = "cpu"):
    """A torch dtype from a dtype, its name (``"bfloat16"``) or a precision (``"bf16"``); None picks
    bfloat16 on GPUs that have it and float32 elsewhere."""
    import torch

    if dtype is None:
        on_gpu = str(device).startswith("cuda")
        return torch.bfloat16 if on_gpu and torch.cuda.is_bf16_supported() else torch.float32
    if isinstance(dtype, str):
        name = PRECISION_DTYPES.get(dtype, dtype)
        resolved = getattr(torch, name, None)
        if not isinstance(resolved, torch.dtype):
            raise ValueError(
                f"unknown dtype {dtype!r}: give a torch dtype name or one of {list(PRECISION_DTYPES)}"
            )
        return resolved
    return dtype


def load_base_model(base_model: str | Path, *, dtype=None, device: str | None = None):
    """``AutoModelForCausalLM.from_pretrained(base_model)`` in ``dtype`` (see ``resolve_dtype``), moved
    to ``device`` when given; raises ``ModelLoadError`` unless its vocabulary is Orpheus'."""
    from transformers import AutoModelForCausalLM

    check_base_model_source(base_model)
    torch_dtype = resolve_dtype(dtype, device or "cpu")
    try:
        model = AutoModelForCausalLM.from_pretrained(str(base_model), dtype=torch_dtype)
    except (OSError, ValueError) as e:
        raise ModelLoadError(_cannot_load("base model", base_model, e, _BASE_MODEL_HINT)) from e
    vocab = model.get_input_embeddings().num_embeddings
    if vocab != orpheus.VOCAB_SIZE:
        raise _not_orpheus(
            base_model, f"its vocabulary has {vocab} tokens, not Orpheus' {orpheus.VOCAB_SIZE}"
        )
    if device is not None:
        model = model.to(device)
    return model


def load_snac(model_id: str | Path, device: str = "cpu"):
    """``SNAC.from_pretrained(model_id)`` on ``device``, in eval mode without gradients, prepared for
    inference (``snac_inference.py``); raises ``ModelLoadError`` unless it runs at 24 kHz.

    ``model_id``: a hub id or a local folder holding ``config.json`` and ``pytorch_model.bin``.
    """
    import torch
    from snac import SNAC

    from voicelab.snac_inference import prepare_for_inference

    check_snac_source(model_id)
    try:
        model = SNAC.from_pretrained(str(model_id))
    except Exception as e:  # hub errors, missing files, bad state dicts: all mean "cannot load"
        raise ModelLoadError(_cannot_load("SNAC model", model_id, e, _SNAC_HINT)) from e
    rate = getattr(model, "sampling_rate", None)
    if rate != orpheus.SAMPLE_RATE:
        raise ModelLoadError(
            f"the SNAC model {str(model_id)!r} runs at {rate} Hz; Orpheus speaks the {orpheus.SAMPLE_RATE} Hz "
            f"codec: pass {DEFAULT_SNAC_MODEL} or a folder holding it ({SNAC_MODEL_SETTING})"
        )
    model = prepare_for_inference(model.to(torch.device(device)).eval())
    model.requires_grad_(False)
    return model


def snac_checkpoint_files(model_id: str | Path) -> list[Path] | None:
    """The files ``load_snac(model_id)`` would read, found without loading anything: a local folder's
    own files, or a hub id's files in the local hub cache (never the network). None when any is missing."""
    folder = Path(model_id)  # as SNAC.from_pretrained decides: an existing folder, else a hub id
    if folder.is_dir():
        files = [folder / name for name in SNAC_CHECKPOINT_FILES]
        return files if all(f.is_file() for f in files) else None
    return _cached_hub_files(str(model_id), SNAC_CHECKPOINT_FILES)
