"""Cost of identifying a base model by content (``voicelab.model_identity``) at Orpheus 3B's real size.

Writes a safetensors file with the tensor names, dtypes and shapes of Orpheus 3B (Llama-3.2-3B layout,
156 940-token vocabulary, bfloat16: ~6.6 GB) as a sparse file (its data are holes: no disk space, no
write time), then times, in one run:

* ``fingerprint_model``: the headers plus ``TENSOR_SAMPLE_BYTES`` of every tensor (what training records
  and each server start computes for the served model);
* SHA-256 of the first ``--full-mib`` MiB of the weights, extrapolated to the whole file: what hashing every
  byte would cost (on a real disk add the time to read 6.6 GB; the sparse holes cost no disk reads).

The sparse file measures CPU and system-call cost; on a cold disk the fingerprint adds one 4 KiB read per
tensor (~255 reads, ~1 MiB), hashing everything adds reading the whole file.

Usage: ``python benchmarks/bench_model_fingerprint.py [--full-mib 512] [--repeat 5]``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import struct
import sys
import tempfile
import time
from pathlib import Path

HIDDEN, INTERMEDIATE, LAYERS, VOCAB = 3072, 8192, 28, 156940
HEADS, KV_HEADS, HEAD_DIM = 24, 8, 128
BF16_BYTES = 2


def orpheus_3b_tensors() -> dict[str, list[int]]:
    shapes = {"model.embed_tokens.weight": [VOCAB, HIDDEN], "model.norm.weight": [HIDDEN]}
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        shapes |= {
            p + "self_attn.q_proj.weight": [HEADS * HEAD_DIM, HIDDEN],
            p + "self_attn.k_proj.weight": [KV_HEADS * HEAD_DIM, HIDDEN],
            p + "self_attn.v_proj.weight": [KV_HEADS * HEAD_DIM, HIDDEN],
            p + "self_attn.o_proj.weight": [HIDDEN, HEADS * HEAD_DIM],
            p + "mlp.gate_proj.weight": [INTERMEDIATE, HIDDEN],
            p + "mlp.up_proj.weight": [INTERMEDIATE, HIDDEN],
            p + "mlp.down_proj.weight": [HIDDEN, INTERMEDIATE],
            p + "input_layernorm.weight": [HIDDEN],
            p + "post_attention_layernorm.weight": [HIDDEN],
        }
    return shapes


def write_sparse_model(folder: Path) -> Path:
    header, offset = {}, 0
    for name, shape in orpheus_3b_tensors().items():
        size = BF16_BYTES
        for dim in shape:
            size *= dim
        header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    path = folder / "model.safetensors"
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        f.truncate(8 + len(raw) + offset)
    config = {"architectures": ["LlamaForCausalLM"], "hidden_size": HIDDEN, "vocab_size": VOCAB}
    (folder / "config.json").write_text(json.dumps(config))
    return path


def main(argv: list[str] | None = None) -> int:
    from voicelab.model_identity import fingerprint_model

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--full-mib", type=int, default=512, help="MiB hashed to extrapolate a full hash")
    parser.add_argument("--repeat", type=int, default=5, help="fingerprint runs (the median is shown)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_sparse_model(Path(tmp))
        size = path.stat().st_size
        tensors = len(orpheus_3b_tensors())
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            fingerprint_model(tmp)
            times.append(time.perf_counter() - start)
        chunk, todo, digest = 2**20, args.full_mib * 2**20, hashlib.sha256()
        start = time.perf_counter()
        with path.open("rb") as f:
            while todo > 0:
                digest.update(f.read(min(chunk, todo)))
                todo -= chunk
        per_byte = (time.perf_counter() - start) / (args.full_mib * 2**20)
    print(f"model file: {size / 1e9:.2f} GB, {tensors} tensors")
    print(f"fingerprint_model: median {sorted(times)[len(times) // 2] * 1e3:.1f} ms of {args.repeat} runs")
    print(f"SHA-256 of every byte: {per_byte * size:.1f} s (from {args.full_mib} MiB; reading not included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
