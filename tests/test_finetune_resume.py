"""Stop a real training process with SIGTERM, then with SIGKILL, resume, and reach the same step count."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from finetune.config import load as load_config
from finetune.train import check_inputs, latest_checkpoint

from test_finetune_train import TINY_RECIPE, write_curated

REPO = Path(__file__).resolve().parent.parent
STEPS = 40


def _wait_for_checkpoint(folder: Path, proc: subprocess.Popen, newer_than: int, timeout: float = 300) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ckpt = latest_checkpoint(folder)
        if ckpt is not None and int(ckpt.name.split("-")[1]) > newer_than:
            return int(ckpt.name.split("-")[1])
        if proc.poll() is not None:
            raise AssertionError(f"training exited (rc {proc.returncode}) before a checkpoint after step "
                                 f"{newer_than}:\n{proc.stderr.read()[-3000:]}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"no checkpoint after step {newer_than} within {timeout}s")


def test_sigterm_and_sigkill_then_resume_reaches_the_same_step_count(tmp_path, tiny_model_dir):
    from finetune.train import run

    data = write_curated(tmp_path / "data" / "demo")
    out = tmp_path / "runs" / "resume"
    ckpts = out / "checkpoints"
    cmd = [sys.executable, "-m", "finetune", "--config", str(TINY_RECIPE), "--model", str(tiny_model_dir),
           "--data", str(data), "--output_dir", str(out), "--max_steps", str(STEPS), "--save_steps", "5",
           "--eval_steps", "1000", "--logging_steps", "1", "--save_total_limit", "3"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")

    # 1. SIGTERM: the trainer saves a checkpoint where it is and the command exits 143
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for_checkpoint(ckpts, proc, 0)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 143, stderr[-3000:]
    assert "Run the same command with --resume" in stderr
    stopped_at = int(latest_checkpoint(ckpts).name.split("-")[1])
    assert 5 <= stopped_at < STEPS
    assert not (out / "adapter_model.safetensors").exists()

    # 2. resume, then SIGKILL (no chance to save anything) once a newer checkpoint exists
    proc = subprocess.Popen(cmd + ["--resume"], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    killed_after = _wait_for_checkpoint(ckpts, proc, stopped_at)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "adapter_model.safetensors").exists(), "the run finished before the kill"
    assert killed_after < STEPS

    # 3. resume to the end (in this process)
    cfg = load_config(TINY_RECIPE, model=str(tiny_model_dir), data=str(data), output_dir=str(out),
                      max_steps=STEPS, save_steps=5, eval_steps=1000, logging_steps=1, save_total_limit=3,
                      resume=True)
    run_dir = run(cfg)
    state = json.loads((latest_checkpoint(ckpts) / "trainer_state.json").read_text())
    assert state["global_step"] == STEPS
    assert json.loads((run_dir / "provenance.json").read_text())["global_step"] == STEPS
    assert (run_dir / "adapter_model.safetensors").is_file()
    # metrics: one training loss per step, 1..STEPS, none duplicated by the restarts
    steps = [m["step"] for m in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if "loss" in m]
    assert steps == list(range(1, STEPS + 1))


def test_existing_run_folder_needs_resume_or_overwrite(tmp_path, tiny_model_dir):
    data = write_curated(tmp_path / "d")
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text("model: x\n")
    cfg = load_config(TINY_RECIPE, model=str(tiny_model_dir), data=str(data), output_dir=str(out))
    with pytest.raises(ValueError, match="already holds a run; pass --resume to continue it or --overwrite"):
        check_inputs(cfg)
    check_inputs(load_config(TINY_RECIPE, model=str(tiny_model_dir), data=str(data), output_dir=str(out),
                             resume=True))
    (out / "config.yaml").unlink()
    (out / "precious.txt").write_text("not a run")
    with pytest.raises(ValueError, match="refusing to delete"):
        check_inputs(load_config(TINY_RECIPE, model=str(tiny_model_dir), data=str(data), output_dir=str(out),
                                 overwrite=True))
