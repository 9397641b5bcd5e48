"""train-lora under torchrun and `accelerate launch`: 2 CPU processes (gloo), the same script unchanged.

Only rank 0 writes. `accelerate launch --multi_gpu` starts the processes through torch's elastic launcher
(as on a GPU machine); `--cpu` would start a single process, so it proves nothing here.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REPO
from test_train_lora import common_args, make_dataset
from voicelab.voice import ADAPTER_CONFIG_FILE, VoiceMetadata, adapter_problems

SCRIPT = REPO / "scripts" / "train_lora.py"
WORLD_SIZE = 2


LAUNCHERS = {
    "torchrun": ["-m", "torch.distributed.run", "--nproc_per_node", str(WORLD_SIZE)],
    "accelerate": [
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        str(WORLD_SIZE),
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
    ],
}


@pytest.mark.parametrize(  # the same code under both launchers: accelerate only in the slow run
    "launcher",
    [pytest.param(n, marks=pytest.mark.slow) if n == "accelerate" else n for n in sorted(LAUNCHERS)],
)
def test_two_process_run_writes_one_voice(launcher, tmp_path, tiny_orpheus_dir, tiny_snac_dir):
    data = make_dataset(tmp_path / "data")  # 3 usable clips
    voices = tmp_path / "voices"
    cmd = [
        sys.executable,
        *LAUNCHERS[launcher],
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
    assert proc.stderr.count(") ready;") == 1, "progress lines are logged once, not once per process"
    assert sorted(p.name for p in voices.iterdir()) == ["frank"]
    meta = VoiceMetadata.read(voices / "frank")
    assert meta.training["steps"] == 2
    config = json.loads((voices / "frank" / ADAPTER_CONFIG_FILE).read_text())
    assert adapter_problems(config) == []
    # 2 processes x batch 1 share each epoch of 3 clips: 2 steps per epoch (one process would need 3)
    last = (voices / "frank" / "loss_log.csv").read_text().splitlines()[-1]
    assert float(last.split(",")[1]) == pytest.approx(1.0)
