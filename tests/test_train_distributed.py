"""train-lora under torchrun: 2 CPU processes (gloo), the same script unchanged; only rank 0 writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from test_train_lora import common_args, make_dataset
from voicelab.voice import ADAPTER_CONFIG_FILE, VoiceMetadata, adapter_problems

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "train_lora.py"
WORLD_SIZE = 2


def test_two_process_run_writes_one_voice(tmp_path, tiny_orpheus_dir, tiny_snac_dir):
    data = make_dataset(tmp_path / "data")  # 3 usable clips
    voices = tmp_path / "voices"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        str(WORLD_SIZE),
        str(SCRIPT),
        "frank",
        str(data),
        *common_args(voices, tiny_orpheus_dir, tiny_snac_dir),
        "--max-steps",
        "2",
        "--logging-steps",
        "1",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("written to") == 1, "only rank 0 reports and writes"
    assert sorted(p.name for p in voices.iterdir()) == ["frank"]
    meta = VoiceMetadata.read(voices / "frank")
    assert meta.training["steps"] == 2
    config = json.loads((voices / "frank" / ADAPTER_CONFIG_FILE).read_text())
    assert adapter_problems(config) == []
    # 2 processes x batch 1 share each epoch of 3 clips: 2 steps per epoch (one process would need 3)
    last = (voices / "frank" / "loss_log.csv").read_text().splitlines()[-1]
    assert float(last.split(",")[1]) == pytest.approx(1.0)
