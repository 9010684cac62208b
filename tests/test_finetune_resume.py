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
import torch

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


def test_the_terminal_stays_quiet(tmp_path, tiny_model_dir):
    """No library's deprecation warning reaches the user (peft reads transformers' deprecated
    ``is_gradient_checkpointing`` when it wraps a model that does not checkpoint), nor the Trainer's notice
    that "mtime may not be reliable on this filesystem" when it rotates checkpoints saved within a second."""
    data = write_curated(tmp_path / "d")
    done = subprocess.run([sys.executable, "-m", "finetune", *_run_args(tiny_model_dir, data, tmp_path / "run",
                                                                         "--gradient_checkpointing", "false",
                                                                         "--max_steps", "3", "--save_steps", "1")],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["checkpoint-2", "checkpoint-3"]
    assert "Warning" not in done.stderr and "mtime" not in done.stderr, done.stderr[-3000:]


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


# --------------------------------------------------------------------------- start-up and resume faults


def _run_args(model, data, out, *extra):
    return ["--config", str(TINY_RECIPE), "--model", str(model), "--data", str(data), "--output_dir", str(out),
            "--max_steps", "3", "--save_steps", "100", "--dev_size", "0", *extra]


def test_a_torn_newest_checkpoint_falls_back_to_the_newest_intact_one(tmp_path, tiny_model_dir, caplog):
    """Truncated files (a kill mid-save, a full disk) in the newest checkpoint: resume from the one before."""
    from finetune.train import run

    data = write_curated(tmp_path / "d")
    out = tmp_path / "run"
    cfg = load_config(TINY_RECIPE, model=str(tiny_model_dir), data=str(data), output_dir=str(out), max_steps=6,
                      save_steps=2, save_total_limit=3, dev_size=0.0, logging_steps=1)
    run(cfg)
    ckpts = out / "checkpoints"
    assert latest_checkpoint(ckpts).name == "checkpoint-6"
    for name, keep in (("optimizer.pt", 0.5), ("adapter_model.safetensors", 0.9)):
        (out / "adapter_model.safetensors").unlink(missing_ok=True)  # as if killed before the end
        torn = ckpts / "checkpoint-6" / name
        good = torn.read_bytes()
        torn.write_bytes(good[: int(len(good) * keep)])
        caplog.clear()
        assert latest_checkpoint(ckpts).name == "checkpoint-4"
        assert f"skipping damaged checkpoint checkpoint-6: {name} is cut short" in caplog.text
        # and --resume finishes from checkpoint-4 to the same final step
        run(load_config(TINY_RECIPE, model=str(tiny_model_dir), data=str(data), output_dir=str(out), max_steps=6,
                        save_steps=2, save_total_limit=3, dev_size=0.0, logging_steps=1, resume=True))
        assert json.loads((out / "provenance.json").read_text())["global_step"] == 6
        steps = [m["step"] for m in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "loss" in m]
        assert steps == [1, 2, 3, 4, 5, 6]


def test_resume_after_the_final_checkpoint_trains_no_step_past_max_steps(tmp_path, tiny_model_dir):
    """Killed right after the final checkpoint was written: --resume finishes the run at max_steps."""
    from safetensors.torch import load_file

    from finetune.train import run

    data = write_curated(tmp_path / "d")
    out = tmp_path / "run"
    kw = dict(model=str(tiny_model_dir), data=str(data), output_dir=str(out), max_steps=5, grad_accum=2,
              save_steps=5, dev_size=0.0, logging_steps=1)
    run(load_config(TINY_RECIPE, **kw))
    final = latest_checkpoint(out / "checkpoints")
    assert final.name == "checkpoint-5"
    for name in ("adapter_model.safetensors", "README.md"):  # the kill came before the run folder was saved
        (out / name).unlink()
    run(load_config(TINY_RECIPE, resume=True, **kw))
    assert json.loads((out / "provenance.json").read_text())["global_step"] == 5
    assert latest_checkpoint(out / "checkpoints").name == "checkpoint-5"
    saved, ckpt = load_file(str(out / "adapter_model.safetensors")), load_file(str(final / "adapter_model.safetensors"))
    assert saved.keys() == ckpt.keys() and all(torch.equal(saved[k], ckpt[k]) for k in saved)
    steps = [m["step"] for m in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "loss" in m]
    assert steps == [1, 2, 3, 4, 5]


def test_a_failed_start_leaves_no_run_behind(tmp_path, tiny_model_dir, capsys, monkeypatch):
    """The Hub unreachable: a one-paragraph error, no traceback, no config.yaml; the same command then fails
    the same way (not with "already holds a run")."""
    from finetune.__main__ import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = write_curated(tmp_path / "d")
    out = tmp_path / "run"
    for _ in range(2):
        rc = main(_run_args("no-such-org/no-such-model", data, out))
        err = capsys.readouterr().err
        assert rc == 2
        assert "error: model: cannot load 'no-such-org/no-such-model'" in err and "Traceback" not in err, err
        assert len(err.strip().splitlines()) <= 3, err
        assert not (out / "config.yaml").exists()


def test_max_length_beyond_the_model_is_an_error_unless_allowed(tmp_path, tiny_model_dir, capsys):
    from finetune.__main__ import main

    data = write_curated(tmp_path / "d")
    rc = main(_run_args(tiny_model_dir, data, tmp_path / "a", "--max_length", "4096"))
    err = capsys.readouterr().err
    assert rc == 2 and "max_length: 4096 exceeds the model's max_position_embeddings (1024)" in err, err
    assert not (tmp_path / "a" / "config.yaml").exists()
    assert main(_run_args(tiny_model_dir, data, tmp_path / "b", "--max_length", "4096",
                          "--allow_longer_than_model")) == 0


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_numbers_fail_validation(value, tiny_model_dir, tmp_path):
    from finetune.config import parse_args

    with pytest.raises(ValueError, match=f"learning_rate: must be a finite number, got {value}"):
        parse_args(_run_args(tiny_model_dir, tmp_path / "d.jsonl", tmp_path / "r", f"--learning_rate={value}"))
