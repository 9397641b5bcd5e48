"""The device code paths on a CUDA GPU: training (bf16, gradient checkpointing), SNAC encoding and
streaming decoding, and training/serving agreement token for token.

Everything else in the suite runs on CPU only; these tests run the same code on ``--gpu-device``:

    python3 -m pytest -m gpu tests/test_gpu.py -v                      # on a GPU machine
    .venv/bin/python -m pytest -m gpu --gpu-device cpu tests/test_gpu.py -v   # rehearsal without a GPU

They need no network, espeak-ng or ffmpeg (numpy-made audio, tiny offline models), and every failure
message states what was measured, so one run on a GPU machine is informative even when a check fails.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from test_decoder import STREAM_TOLERANCE, _random_frames, _silence_noise
from test_train_lora import (
    MEMORISE_TEXT,
    common_args,
    make_dataset,
    speak_greedily,
    train_memoriser,
)
from voicelab import dataset, models, orpheus, testing
from voicelab.cli import train_lora
from voicelab.training import build, snac_codec
from voicelab.training import dataset as ds
from voicelab.training.trainer import choose_precision, collate
from voicelab.voice import (
    ADAPTER_CONFIG_FILE,
    ADAPTER_WEIGHTS_FILE,
    VoiceFolder,
    VoiceMetadata,
    adapter_problems,
)

pytestmark = pytest.mark.gpu

SR = orpheus.SAMPLE_RATE
SPF = orpheus.SAMPLES_PER_FRAME

LOSS_RTOL = 1e-3
"""Relative loss difference allowed between runs that differ only in precision (bf16 on the device vs fp32 on
CPU) or in activation checkpointing (which recomputes the same forward). Measured on CPU: running this tiny
model in bf16 moves its loss (~11.94) by 2e-6 relative, so 1e-3 (0.012) leaves a wide margin for other
kernels, yet is below what 3 steps at lr 1e-3 change the loss by (0.03 by step 2, 0.054 by step 3): a run
whose LoRA got no gradients would fail it."""
DEVICE_DECODE_TOLERANCE = 2e-3
"""Max abs sample difference (relative to max(1, peak)) between a device decode and a CPU decode of the same
windows. cuDNN convolutions run in TF32 by default: emulating TF32 rounding on CPU moved this decoder's
output by 4.9e-4 (peak 0.38); 2e-3 (-54 dBFS) is also the accepted stream-vs-whole bound
(tests/test_decoder.py STREAM_TOLERANCE). A broken device path (wrong windows, mixed-up streams) differs by
~0.1 or more."""
BATCH_AGREEMENT = 0.999
"""Fraction of codes equal between one-clip and 8-clip encoder passes on the device (the silent tail makes
codes independent of the batch; only a different kernel's summation order can flip a near tie)."""
CPU_AGREEMENT = 0.99
"""Fraction of codes equal between the device and CPU encoders (emulated TF32 rounding: 0.9987)."""


def _script_device(gpu_device: str) -> str:
    """train_lora.py's ``--device``/``--snac-device`` take ``cuda`` or ``cpu``; ``cuda:N`` trains on
    torch's current device."""
    return "cuda" if gpu_device.startswith("cuda") else gpu_device


def _is_cuda(gpu_device: str) -> bool:
    return torch.device(gpu_device).type == "cuda"


def _device_note(gpu_device: str) -> str:
    """The device in words, for failure messages (GPU name and TF32 settings on CUDA)."""
    if not _is_cuda(gpu_device):
        return f"device {gpu_device}"
    try:
        name = torch.cuda.get_device_name(torch.device(gpu_device))
        tf32 = (
            f"cudnn.allow_tf32={torch.backends.cudnn.allow_tf32}, "
            f"matmul.allow_tf32={torch.backends.cuda.matmul.allow_tf32}"
        )
    except Exception as e:  # only a description: never fail a test over it
        name, tf32 = "?", f"settings unreadable: {e}"
    return f"device {gpu_device} ({name}, torch {torch.__version__}, {tf32})"


def _report(test: str, measured: str) -> str:
    """Print what a test measured (shown with ``-rP`` or ``-s`` when it passes) and return it for the
    assertion messages."""
    print(f"MEASURED {test}: {measured}")
    return measured


def _tree_hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# --- train-lora on the device ---------------------------------------------------------------------------
# batch 4 > the 3 usable clips of make_dataset: every step sees the whole dataset, so the first logged loss
# is the base model's loss on it (LoRA B starts at zero) whatever the data order.
TRAIN_SCHEDULE = [
    "--batch-size",
    "4",
    "--max-steps",
    "3",
    "--logging-steps",
    "1",
    "--learning-rate",
    "1e-3",
    "--seed",
    "11",
]


@pytest.fixture(scope="module")
def device_run(tmp_path_factory, tiny_orpheus_dir, tiny_snac_dir, gpu_device):
    """One voice trained through the script on the device, without gradient checkpointing."""
    root = tmp_path_factory.mktemp("gpu_train")
    data = make_dataset(root / "prepared" / "gina")
    voices = root / "voices"
    args = common_args(voices, tiny_orpheus_dir, tiny_snac_dir, device=_script_device(gpu_device))
    base_before = _tree_hashes(tiny_orpheus_dir)
    rc = train_lora.main(["gina", str(data), *args, *TRAIN_SCHEDULE])
    return {
        "rc": rc,
        "data": data,
        "voice": voices / "gina",
        "args": args,
        "base_before": base_before,
        "base_after": _tree_hashes(tiny_orpheus_dir),
    }


def _losses(voice: Path) -> list[tuple[int, float, float | None]]:
    return [(p.step, p.loss, p.grad_norm) for p in VoiceFolder(voice).read_loss_log()]


def test_train_lora_on_device_writes_a_trained_voice_in_the_device_precision(
    device_run, tiny_orpheus_dir, gpu_device
):
    """exit 0; precision as chosen for the device (bf16 on Ampere+); finite losses; a vLLM-loadable,
    trained, finite adapter; the base model folder untouched."""
    from safetensors.torch import load_file

    note = _device_note(gpu_device)
    assert device_run["rc"] == 0, f"train_lora.py exited {device_run['rc']} on {note} (stderr above)"
    voice = device_run["voice"]
    meta = VoiceMetadata.read(voice)
    expected = choose_precision(_script_device(gpu_device))
    assert meta.training["precision"] == expected, (
        f"voice.json precision {meta.training['precision']!r}, choose_precision gives {expected!r} on {note}"
    )
    if _is_cuda(gpu_device) and torch.cuda.is_bf16_supported():
        assert meta.training["precision"] == "bf16", f"this GPU supports bf16: {note}"
    assert meta.training["device"] == _script_device(gpu_device)
    assert meta.dataset["clips_used"] == 3 and meta.dataset["snac_encoded"] == 3, meta.dataset

    losses = _losses(voice)
    assert [step for step, _, _ in losses] == [1, 2, 3], losses
    assert all(math.isfinite(loss) for _, loss, _ in losses), f"non-finite loss on {note}: {losses}"
    assert all(g is None or math.isfinite(g) for _, _, g in losses), (
        f"non-finite grad norm on {note}: {losses}"
    )
    assert meta.final_loss is not None and math.isfinite(meta.final_loss)

    config = json.loads((voice / ADAPTER_CONFIG_FILE).read_text())
    assert adapter_problems(config, base_model=str(tiny_orpheus_dir), max_lora_rank=8) == []

    weights = load_file(voice / ADAPTER_WEIGHTS_FILE)
    lora_b = {name: t for name, t in weights.items() if "lora_B" in name}
    dtypes = sorted({str(t.dtype) for t in weights.values()})
    b_sums = {name: t.float().abs().sum().item() for name, t in lora_b.items()}
    assert lora_b, f"no lora_B tensors in {sorted(weights)[:4]}..."
    measured = _report(
        "train",
        f"{note}: precision {meta.training['precision']}, losses (step, loss, grad norm) {losses}, "
        f"adapter dtypes {dtypes}, sum |lora_B| per tensor min {min(b_sums.values()):.3e} "
        f"max {max(b_sums.values()):.3e}",
    )
    assert all(torch.isfinite(t.float()).all() for t in weights.values()), (
        f"non-finite adapter weights; {measured}"
    )
    assert all(s > 0 for s in b_sums.values()), (
        f"lora_B starts at zero and training must move it; still zero after 3 steps: "
        f"{[n for n, s in b_sums.items() if s == 0]}; {measured}"
    )
    changed = sorted(
        name
        for name in device_run["base_before"].keys() | device_run["base_after"].keys()
        if device_run["base_before"].get(name) != device_run["base_after"].get(name)
    )
    assert changed == [], f"training changed the base model folder: {changed}"


def test_first_device_loss_matches_fp32_cpu_loss(
    device_run, tiny_orpheus_dir, tiny_snac_dir, tiny_tokenizer, gpu_device
):
    """The first logged loss (LoRA B = 0, the whole dataset in one batch) equals the fp32 CPU loss of the
    same sequences: the device's precision and loss computation change nothing that matters."""
    from transformers import AutoModelForCausalLM

    assert device_run["rc"] == 0
    req = build.TrainRequest(
        name="gina",
        dataset_dir=device_run["data"],
        snac_model=str(tiny_snac_dir),
        snac_device=gpu_device,
    )
    # the code cache the run wrote: exactly the codes it trained on
    prepared = build.prepare_examples(req, tiny_tokenizer, progress=False)
    assert prepared.stats["snac_from_cache"] == 3, prepared.stats
    model = AutoModelForCausalLM.from_pretrained(tiny_orpheus_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        cpu_loss = model(
            **collate([{"input_ids": e.input_ids, "labels": e.labels} for e in prepared.examples])
        )
    cpu_loss = cpu_loss.loss.item()
    step, device_loss, _ = _losses(device_run["voice"])[0]
    assert step == 1
    measured = _report(
        "first-loss",
        f"first loss {device_loss:.6f} on {_device_note(gpu_device)} "
        f"({VoiceMetadata.read(device_run['voice']).training['precision']}) vs {cpu_loss:.6f} fp32 on CPU: "
        f"relative difference {abs(device_loss - cpu_loss) / cpu_loss:.2e} (allowed {LOSS_RTOL})",
    )
    assert device_loss == pytest.approx(cpu_loss, rel=LOSS_RTOL), measured


def test_gradient_checkpointing_on_device_trains_the_same(
    device_run, tmp_path, tiny_orpheus_dir, tiny_snac_dir, gpu_device
):
    """--gradient-checkpointing: exit 0, finite losses, and the same losses as the run without it (same
    seed, same data: checkpointing recomputes the same forward)."""
    assert device_run["rc"] == 0
    voices = tmp_path / "voices"
    args = common_args(voices, tiny_orpheus_dir, tiny_snac_dir, device=_script_device(gpu_device))
    rc = train_lora.main(
        ["gina", str(device_run["data"]), *args, *TRAIN_SCHEDULE, "--gradient-checkpointing"]
    )
    note = _device_note(gpu_device)
    assert rc == 0, f"train_lora.py --gradient-checkpointing exited {rc} on {note} (stderr above)"
    meta = VoiceMetadata.read(voices / "gina")
    assert meta.training["gradient_checkpointing"] is True
    with_gc = _losses(voices / "gina")
    without = _losses(device_run["voice"])
    measured = _report(
        "checkpointing",
        f"on {note} ({meta.training['precision']}): with checkpointing {[(s, loss) for s, loss, _ in with_gc]}, "
        f"without {[(s, loss) for s, loss, _ in without]}",
    )
    assert all(math.isfinite(loss) for _, loss, _ in with_gc), measured
    assert [s for s, _, _ in with_gc] == [s for s, _, _ in without] == [1, 2, 3], measured
    assert with_gc[0][1] == pytest.approx(without[0][1], rel=LOSS_RTOL), "first loss differs " + measured
    # --seed fixes the LoRA init and the data order, so the later steps agree as well
    for (_, a, _), (_, b, _) in zip(with_gc[1:], without[1:], strict=True):
        assert a == pytest.approx(b, rel=LOSS_RTOL), "later losses differ " + measured


# --- SNAC encoding on the device --------------------------------------------------------------------------
CLIP_SECONDS = [3.0, 3.8, 5.1, 6.4, 7.7, 9.3, 11.2, 12.9]
"""Eight clips across the prepared-clip range (3-13 s), each ending in a short pause."""


@pytest.fixture(scope="module")
def device_codes(real_size_snac_dir, gpu_device):
    """Clips, the real-size SNAC on the device, and each clip's codes from a one-clip pass."""
    clips = [
        testing.speech_like_noise([(seconds - 0.3, 0.3)], SR, seed=40 + i)[:, 0]
        for i, seconds in enumerate(CLIP_SECONDS)
    ]
    model = models.load_snac(str(real_size_snac_dir), gpu_device)
    single = [snac_codec.encode_batch(model, [clip], gpu_device)[0] for clip in clips]
    return {"clips": clips, "model": model, "single": single}


def _agreement(reference: list[np.ndarray], other: list[np.ndarray]) -> tuple[float, str]:
    """Fraction of equal codes, and a description: differing codes per clip and per SNAC level."""
    equal = total = 0
    per_clip, per_level = [], [0] * orpheus.SNAC_LEVELS
    for ref, got in zip(reference, other, strict=True):
        assert ref.shape == got.shape, f"frames {ref.shape} vs {got.shape}"
        diff = ref != got
        equal += int((~diff).sum())
        total += ref.size
        per_clip.append(int(diff.sum()))
        for column, (level, _) in enumerate(orpheus.FRAME_LAYOUT):
            per_level[level] += int(diff[:, column].sum())
    fraction = equal / total
    return fraction, (
        f"{fraction:.5f} of {total} codes equal ({total - equal} differ; per clip {per_clip}; "
        f"per level L0/L1/L2 {per_level})"
    )


def test_snac_codes_on_device_do_not_depend_on_the_batch(device_codes, gpu_device):
    """One clip per encoder pass vs encode_clips' 8-clip pass (sorted by length, padded to the longest)."""
    clips, model = device_codes["clips"], device_codes["model"]
    for clip, frames in zip(clips, device_codes["single"], strict=True):
        assert frames.shape == (snac_codec.frames_for(len(clip)), orpheus.CODES_PER_FRAME)
        assert frames.min() >= 0 and frames.max() < orpheus.CODEBOOK_SIZE
    order = [3, 7, 0, 5, 1, 6, 2, 4]  # not sorted: encode_clips sorts by length itself
    items = [(f"clip{i}", lambda i=i: clips[i]) for i in order]
    batched, stats = snac_codec.encode_clips(
        items,
        model,
        "fingerprint",
        cache=None,
        device=gpu_device,
        batch_size=8,
        max_samples=None,  # what "auto" gives on cuda: one pass of all 8 (on CPU too, for the rehearsal)
        progress=False,
    )
    assert stats.encoded == len(clips)
    fraction, agreement = _agreement(device_codes["single"], [batched[f"clip{i}"] for i in range(len(clips))])
    measured = _report(
        "snac-batch", f"batch of 8 vs one clip per pass on {_device_note(gpu_device)}: {agreement}"
    )
    assert fraction >= BATCH_AGREEMENT, measured


def test_snac_codes_on_device_match_cpu_codes(device_codes, real_size_snac_dir, gpu_device):
    """The same clips encoded on CPU (fp32) vs on the device (TF32 convolutions by default on CUDA)."""
    model = models.load_snac(str(real_size_snac_dir), "cpu")  # a CPU rehearsal compares CPU with CPU
    cpu = [snac_codec.encode_batch(model, [clip], "cpu")[0] for clip in device_codes["clips"]]
    fraction, agreement = _agreement(cpu, device_codes["single"])
    measured = _report("snac-cpu", f"{_device_note(gpu_device)} vs CPU: {agreement}")
    assert fraction >= CPU_AGREEMENT, measured
    # one code cache serves both: its key is read from the checkpoint's files, never from weights baked on
    # a device, so it exists before either model is loaded
    assert snac_codec.checkpoint_fingerprint(str(real_size_snac_dir)) is not None


# --- streaming decode on the device -----------------------------------------------------------------------
async def _stream_frame_by_frame(decoder, frames: np.ndarray) -> list[np.ndarray]:
    stream = decoder.open_stream()
    chunks = []
    for i in range(len(frames)):
        chunks += await stream.push(frames[i : i + 1])
        await asyncio.sleep(0)  # let concurrent streams submit their windows too
    return chunks + await stream.finish()


def _max_diff(got: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """(max abs difference, the scale it is judged against: max(1, peak of the reference))."""
    return float(np.abs(got - reference).max()), max(1.0, float(np.abs(reference).max()))


@pytest.fixture(scope="module")
def decoders(real_size_snac_dir, gpu_device):
    from voicelab.engine.decoder import StreamingSnacDecoder

    return {
        "device": _silence_noise(StreamingSnacDecoder(real_size_snac_dir, gpu_device)),
        "cpu": _silence_noise(StreamingSnacDecoder(real_size_snac_dir, "cpu")),
    }


def test_streaming_decode_on_device_matches_cpu(decoders, gpu_device):
    """Frame by frame on the device: every frame's samples, float32, same as the CPU decoder's stream and
    seamless against a whole decode."""
    import anyio

    note = _device_note(gpu_device)
    frames = _random_frames(14, seed=5)
    device_chunks = anyio.run(_stream_frame_by_frame, decoders["device"], frames)
    cpu_chunks = anyio.run(_stream_frame_by_frame, decoders["cpu"], frames)
    assert [len(c) for c in device_chunks] == [len(c) for c in cpu_chunks]
    assert all(c.dtype == np.float32 and len(c) % SPF == 0 for c in device_chunks)
    streamed, cpu_streamed = np.concatenate(device_chunks), np.concatenate(cpu_chunks)
    assert streamed.shape == (len(frames) * SPF,), f"{streamed.shape} samples for {len(frames)} frames"
    assert np.isfinite(streamed).all()
    whole = decoders["device"].decode_frames(frames)
    vs_cpu, scale = _max_diff(streamed, cpu_streamed)
    vs_whole, whole_scale = _max_diff(streamed, whole)
    measured = _report(
        "stream",
        f"{len(frames)} frames pushed one by one on {note}, chunks {[len(c) // SPF for c in device_chunks]} "
        f"frames, peak {float(np.abs(streamed).max()):.3f}: max abs difference vs the CPU stream {vs_cpu:.3e} "
        f"(allowed {DEVICE_DECODE_TOLERANCE * scale:.1e}), vs a whole decode on the device {vs_whole:.3e} "
        f"(allowed {STREAM_TOLERANCE * whole_scale:.1e})",
    )
    assert vs_cpu <= DEVICE_DECODE_TOLERANCE * scale, measured
    assert vs_whole <= STREAM_TOLERANCE * whole_scale, measured


def test_concurrent_streams_on_device_each_get_their_own_audio(decoders, gpu_device):
    """4 streams at once (their windows decoded together in batches) vs each stream decoded alone."""
    import anyio

    decoder = decoders["device"]
    all_frames = [_random_frames(14, seed=100 + i) for i in range(4)]
    alone = [np.concatenate(anyio.run(_stream_frame_by_frame, decoder, f)) for f in all_frames]
    results: dict[int, np.ndarray] = {}
    batches_before, windows_before = decoder.batches_run, decoder.windows_decoded

    async def one(i):
        results[i] = np.concatenate(await _stream_frame_by_frame(decoder, all_frames[i]))

    async def run():
        async with anyio.create_task_group() as tg:
            for i in range(len(all_frames)):
                tg.start_soon(one, i)

    anyio.run(run)
    batches = decoder.batches_run - batches_before
    windows = decoder.windows_decoded - windows_before
    assert all(results[i].shape == alone[i].shape for i in range(len(all_frames)))
    diffs = [_max_diff(results[i], alone[i]) for i in range(len(all_frames))]
    between = _max_diff(results[0], results[1])[0]
    measured = _report(
        "concurrent",
        f"{len(all_frames)} concurrent streams on {_device_note(gpu_device)}: {windows} windows in {batches} "
        f"passes; max abs difference vs each stream alone {[f'{d:.2e}' for d, _ in diffs]} (allowed "
        f"{DEVICE_DECODE_TOLERANCE}); streams 0 and 1 differ by {between:.3f}",
    )
    assert batches < windows, "nothing was batched: " + measured
    assert all(diff <= DEVICE_DECODE_TOLERANCE * scale for diff, scale in diffs), measured
    assert between > 0.01, "two streams of different frames gave the same audio: " + measured


# --- training and serving agree token for token on the device ------------------------------------------
DEVICE_MEMORISE_STEPS = "80"
"""Twice the CPU test's 40: the tiny model's frozen tied embeddings cap its logits near 1, so memorising
gives margins of only ~0.2 logits (teacher-forced, measured on CPU: 0.17-0.19 after 40 steps, 0.23-0.24
after 80, in fp32 and in bf16 training alike); bf16 serving moved them by ~0.002."""


def _teacher_forced_margins(model, prompt: list[int], expected: list[int], device) -> list[float]:
    """Per generated position: the expected id's logit minus the best other id the engine may pick there."""
    sequence = [*prompt, *expected, orpheus.END_OF_SPEECH]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([sequence], device=device)).logits[0].float().cpu()
    margins = []
    for step in range(len(expected) + 1):
        position = step % orpheus.CODES_PER_FRAME
        allowed = list(orpheus.audio_token_range(position))
        if position == 0:
            allowed.append(orpheus.END_OF_SPEECH)
        row = logits[len(prompt) - 1 + step, allowed]
        target = allowed.index(sequence[len(prompt) + step])
        others = torch.cat([row[:target], row[target + 1 :]])
        margins.append(float(row[target] - others.max()))
    return margins


def test_greedy_generation_on_device_reproduces_the_training_clip(
    tmp_path, tiny_orpheus_dir, tiny_snac_dir, tiny_tokenizer, gpu_device
):
    """Train on the device, then speak through what the server uses (registry, contract, LocalEngine on the
    device in its default dtype, bf16 on Ampere+): greedy generation gives the clip's audio tokens, then
    END_OF_SPEECH."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from voicelab.engine import LocalEngine

    rc, data, voices = train_memoriser(
        tmp_path,
        tiny_orpheus_dir,
        tiny_snac_dir,
        steps=DEVICE_MEMORISE_STEPS,
        device=_script_device(gpu_device),
    )
    note = _device_note(gpu_device)
    assert rc == 0, f"train_lora.py exited {rc} on {note}"
    meta = VoiceMetadata.read(voices / "erin")

    # the codes training used: the cache entry its SNAC pass (on the device) wrote
    audio = ds.load_clip_audio(ds.Clip("one", data / "one.wav", MEMORISE_TEXT))
    key = snac_codec.cache_key(audio, snac_codec.checkpoint_fingerprint(str(tiny_snac_dir)))
    trained_frames = snac_codec.CodeCache(data / dataset.CACHE_DIR).get(
        key, snac_codec.frames_for(len(audio))
    )
    assert trained_frames is not None, "training left no cache entry for the clip"
    expected = orpheus.frames_to_tokens(trained_frames).tolist()

    engine = LocalEngine(str(tiny_orpheus_dir), device=gpu_device)
    serving_dtype = engine.model.dtype
    prompt, generated, chunks = speak_greedily(
        engine, voices, tiny_orpheus_dir, tiny_tokenizer, len(expected) + 5
    )

    check = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_orpheus_dir, dtype=serving_dtype).to(gpu_device),
        voices / "erin",
    ).eval()
    margins = _teacher_forced_margins(check, prompt, expected, gpu_device)
    first_diff = next((i for i, (a, b) in enumerate(zip(generated, expected, strict=False)) if a != b), None)
    measured = _report(
        "greedy",
        f"on {note}: trained in {meta.training['precision']} (final loss {meta.final_loss:.4f}), served in "
        f"{serving_dtype}; generated {len(generated)} ids (finish {chunks[-1].finish_reason!r}) for "
        f"{len(expected)} expected, first difference at {first_diff}; teacher-forced margins min "
        f"{min(margins):.3f} (position {int(np.argmin(margins))}), mean {float(np.mean(margins)):.3f}",
    )
    assert generated == expected, measured
    assert chunks[-1].finish_reason == "stop", "generation ends on END_OF_SPEECH, as trained; " + measured
    parser = orpheus.AudioTokenParser()
    frames = parser.feed_ids([*generated, orpheus.END_OF_SPEECH])
    assert parser.ended and np.array_equal(frames, trained_frames)
