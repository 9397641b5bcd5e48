"""Which base model a folder or hub id holds, judged by content rather than by where it sits.

An adapter records its base model as the path or hub id given at training time; the same model copied to
another machine sits at another path. ``model_identity`` names a model by what it contains:

- ``fingerprint``: a SHA-256 over ``config.json`` (without the keys that only say where it came from or
  which library wrote it) and, for every weight tensor in the safetensors files, its name, dtype, shape
  and a hash of its first ``TENSOR_SAMPLE_BYTES`` bytes. Fine-tuning changes every tensor it touches, so
  the samples tell two fine-tunes of one architecture apart; tensors are sorted by name, so re-sharding the
  same weights keeps the fingerprint. It reads the file headers plus 4 KiB per tensor (about 1 MiB for
  Orpheus 3B's ~250 tensors) instead of hashing gigabytes: cheap enough for every server start.
- ``hub_id``: the Hugging Face repository, when the name is one or the folder lies in the hub cache.

A hub id is looked up in the local Hugging Face cache only: nothing here touches the network.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
import struct
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

FINGERPRINT_SCHEME = "v1"
"""Prefix of every fingerprint: a later scheme never matches an older one by accident."""
CONFIG_FILE = "config.json"
CONFIG_KEYS_IGNORED = frozenset({"_name_or_path", "transformers_version", "torch_dtype", "dtype"})
"""Where the copy came from and which transformers saved it; the weights' dtypes are in the fingerprint."""
SAFETENSORS_INDEX = "model.safetensors.index.json"
TENSOR_SAMPLE_BYTES = 4096
HEADER_LENGTH_BYTES = 8  # safetensors: a little-endian u64 header length, the JSON header, then the data
MAX_HEADER_BYTES = 100 * 2**20  # a larger "header" means the file is not safetensors
PICKLE_WEIGHTS_GLOB = "*.bin"
PICKLE_SAMPLES = 16
"""``*.bin`` files cannot be read without unpickling: this many evenly spaced samples stand for the tensors."""
HUB_CACHE_FOLDER = re.compile(r"^models--(?P<owner>[^/]+?)--(?P<name>[^/]+)$")
"""The hub cache stores ``owner/name`` as ``models--owner--name/snapshots/<revision>/``."""


@dataclass(frozen=True)
class ModelIdentity:
    hub_id: str | None
    fingerprint: str | None
    """None when no local copy was found (a hub id that is not in the cache) or it holds no weights."""


def model_identity(name_or_path: str) -> ModelIdentity:
    """The identity of a base model given as a local folder or a hub id (looked up in the cache)."""
    folder = local_model_folder(name_or_path)
    hub_id = hub_id_of(folder) if folder is not None else None
    if hub_id is None and not Path(name_or_path).expanduser().is_dir() and _looks_like_hub_id(name_or_path):
        hub_id = name_or_path
    fingerprint = None
    if folder is not None:
        signature = tuple(
            (p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.iterdir()) if p.is_file()
        )
        try:
            fingerprint = _cached_fingerprint(str(folder.resolve()), signature)
        except (OSError, ValueError, KeyError, TypeError, struct.error) as e:
            logger.warning("cannot fingerprint the model in %s: %s", folder, e)
    return ModelIdentity(hub_id=hub_id, fingerprint=fingerprint)


def local_model_folder(name_or_path: str) -> Path | None:
    """The folder holding the model: ``name_or_path`` itself, or its snapshot in the hub cache, or None."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if not _looks_like_hub_id(name_or_path):
        return None
    try:
        from huggingface_hub import try_to_load_from_cache  # a cache lookup, never a download
    except ImportError:
        return None
    try:
        cached = try_to_load_from_cache(name_or_path, CONFIG_FILE)
    except Exception as e:  # an id the hub library rejects is simply not cached
        logger.debug("hub cache lookup of %r failed: %s", name_or_path, e)
        return None
    return Path(cached).parent if isinstance(cached, str) else None


def hub_id_of(folder: Path) -> str | None:
    """``owner/name`` when ``folder`` is a snapshot inside the Hugging Face cache."""
    for part in Path(folder).resolve().parts:
        match = HUB_CACHE_FOLDER.match(part)
        if match:
            return f"{match['owner']}/{match['name']}"
    return None


def fingerprint_model(folder: Path | str) -> str | None:
    """The content fingerprint of the model in ``folder`` (see the module docstring), or None without weights."""
    folder = Path(folder)
    config_path = folder / CONFIG_FILE
    if not config_path.is_file():
        return None
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if isinstance(config, dict):
        config = {k: v for k, v in config.items() if k not in CONFIG_KEYS_IGNORED}
    weights = _safetensors_entries(folder) or _pickle_entries(folder)
    if not weights:
        return None
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for entry in sorted(weights):
        digest.update(entry.encode())
    return f"{FINGERPRINT_SCHEME}:{digest.hexdigest()}"


@functools.lru_cache(maxsize=16)
def _cached_fingerprint(folder: str, signature: tuple) -> str | None:
    # ``signature`` (file names, sizes, mtimes) is part of the key: a changed folder is fingerprinted again.
    return fingerprint_model(folder)


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "~"))


def _safetensors_files(folder: Path) -> list[Path]:
    index = folder / SAFETENSORS_INDEX
    if index.is_file():  # the index names the shards; other *.safetensors there may be unrelated copies
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
        return [folder / name for name in sorted(set(weight_map.values()))]
    return sorted(folder.glob("*.safetensors"))


def _safetensors_entries(folder: Path) -> list[str]:
    entries = []
    for path in _safetensors_files(folder):
        with path.open("rb") as f:
            (header_length,) = struct.unpack("<Q", f.read(HEADER_LENGTH_BYTES))
            if header_length > MAX_HEADER_BYTES:
                raise ValueError(f"{path}: not a safetensors file (header of {header_length} bytes)")
            header = json.loads(f.read(header_length))
            data_start = HEADER_LENGTH_BYTES + header_length
            for name, info in header.items():
                if name == "__metadata__":
                    continue
                begin, end = info["data_offsets"]
                f.seek(data_start + begin)
                sample = hashlib.sha256(f.read(min(TENSOR_SAMPLE_BYTES, end - begin))).hexdigest()
                entries.append(f"{name} {info['dtype']} {info['shape']} {end - begin} {sample}\n")
    return entries


def _pickle_entries(folder: Path) -> list[str]:
    entries = []
    for path in sorted(folder.glob(PICKLE_WEIGHTS_GLOB)):
        size = path.stat().st_size
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for i in range(PICKLE_SAMPLES):
                f.seek(size * i // PICKLE_SAMPLES)
                digest.update(f.read(TENSOR_SAMPLE_BYTES))
        entries.append(f"{size} {digest.hexdigest()}\n")
    return entries
