"""The spine of a finetune run: QLoRA / LoRA adapters through the transformers (or TRL) Trainer.

``run(cfg)`` reads top to bottom: check inputs → output folder → tokenizer and data → model →
trainer → train (or resume) → save the run folder. The Trainer does the loop, checkpoints, the dev
loss, the progress bar and the optimizer; this module only feeds it and records what happened.
The method (``method: sft | dpo``) supplies the three steps that differ: finetune/sft.py and
finetune/dpo.py. Beside them: finetune/model.py (dtype, 4-bit base, LoRA), finetune/data.py (rows and
collators), finetune/loss.py (the ``compute_loss_func``), finetune/attention.py (packed rows),
finetune/callbacks.py (metrics, SIGTERM, the non-finite loss guard), finetune/provenance.py
(provenance.json and the model card).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path

from contract.io import append_jsonl, write_json
from finetune.callbacks import NonFiniteLossGuard, TrainingDiverged
from finetune.config import FinetuneConfig, save_yaml
from finetune.model import check_model_fits, compile_layers, compile_missing, load_tokenizer, resolve_dtype
from finetune.provenance import config_header, model_card, now, provenance, start_provenance, started_before
from finetune.sft import CHECKPOINTS

log = logging.getLogger("finetune")
# The Trainer orders checkpoints by mtime when it rotates them, and where two were saved within a second (short
# steps) says "mtime may not be reliable on this filesystem" and orders them by step: nothing is wrong, and step
# order is what it uses then. Kept off the terminal.
logging.getLogger("transformers.trainer_utils").addFilter(lambda record: "mtime may not be reliable" not in
                                                          record.getMessage())


class TrainingInterrupted(RuntimeError):
    """Training stopped early on SIGTERM after saving a checkpoint; ``--resume`` continues it."""


# --------------------------------------------------------------------------- the spine


def run(cfg: FinetuneConfig, callbacks: tuple = ()) -> Path:
    """Train an adapter as ``cfg`` says and return the run folder. ``callbacks``: extra
    ``transformers.TrainerCallback`` objects (they see the model at every step)."""
    import torch

    check_inputs(cfg)
    run_dir, resume_from = prepare_output_dir(cfg)
    started = started_before(run_dir) if resume_from else None
    started = started or now()

    method = _method(cfg)
    tokenizer, eot = load_tokenizer(cfg)
    train_rows, dev_rows, stats = method.load_data(cfg, tokenizer, eot)
    dtype = resolve_dtype(cfg.compute_dtype)
    torch.manual_seed(cfg.seed)
    model = method.load_model(cfg, dtype)
    check_model_fits(cfg, model)
    if cfg.compile_layers:  # traced at the first step, with the adapters DPO's trainer adds by then
        compile_layers(model)
    check_optimizer(cfg)

    # Training begins: only from here does the folder hold a run (a start that failed above leaves it as it was).
    if _is_main():
        if cfg.overwrite and run_dir.exists():
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        save_yaml(cfg, run_dir / "config.yaml", header=config_header(cfg))
        write_json(run_dir / "data_stats.json", stats)
        write_json(run_dir / "provenance.json", start_provenance(cfg, eot, dtype, stats, started))
    trainer = method.make_trainer(cfg, model, tokenizer, train_rows, dev_rows, run_dir, dtype,
                                  eval_on_start=bool(dev_rows) and resume_from is None)
    for callback in callbacks:
        trainer.add_callback(callback)
    guard = NonFiniteLossGuard(trainer)
    if _is_main():
        append_jsonl(run_dir / "metrics.jsonl", {"step": _step_of(resume_from) if resume_from else 0, "event": "data",
                                                 **{f"{k}/{s}": v for k, st in stats.items() for s, v in st.items()
                                                    if s != "dropped_ids"}})

    log.info("training %s on %s → %s%s", cfg.model, cfg.data, run_dir,
             f" (resuming from {resume_from.name})" if resume_from else "")
    try:
        if resume_from and checkpoint_is_final(resume_from):
            # killed after the final checkpoint: finish from it without training (the Trainer would run a step
            # past max_steps when resuming at the end with gradient accumulation)
            restore_final_checkpoint(trainer, resume_from)
        else:
            trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    except TrainingDiverged as err:
        last = latest_checkpoint(run_dir / CHECKPOINTS)
        raise TrainingDiverged(f"{err}. Last complete checkpoint: {last or 'none'}. Lower learning_rate "
                               f"(now {cfg.learning_rate}), check max_grad_norm or the data.") from None
    finally:
        guard.remove()
    state = trainer.state
    if state.global_step < state.max_steps:
        raise TrainingInterrupted(f"training stopped at step {state.global_step} of {state.max_steps} (SIGTERM); "
                                  f"a checkpoint is in {run_dir / CHECKPOINTS}. Run the same command with "
                                  "--resume to continue.")
    if dev_rows and not any("eval_loss" in x and x.get("step") == state.global_step for x in state.log_history):
        trainer.evaluate()  # the dev loss at the final step, unless eval_steps already took it there

    save_run(cfg, trainer, tokenizer, eot, run_dir, stats, dtype, started)
    log.info("done: %s (step %d)", run_dir, state.global_step)
    return run_dir


def _method(cfg: FinetuneConfig):
    """The module of the three steps that differ between methods: ``load_data``, ``load_model``,
    ``make_trainer`` (finetune/sft.py, finetune/dpo.py)."""
    if cfg.method == "dpo":
        from finetune import dpo

        return dpo
    from finetune import sft

    return sft


# --------------------------------------------------------------------------- inputs and output folder


def check_inputs(cfg: FinetuneConfig) -> None:
    """The files and folders the config names exist (all problems in one ValueError)."""
    from contract.readers import container_kind
    from contract.schema import DataError

    from contract.models import model_problem
    from finetune.loss import liger_missing

    issues = []
    problem = model_problem(cfg.model)  # a Hub id, a model folder, a .gguf file or a built-in name
    if problem:
        issues.append(problem)
    for key in ("data", "dev_data"):
        value = getattr(cfg, key)
        if value:
            try:
                container_kind(value)
            except DataError as err:
                issues.append(f"{key}: {err}")
    for wanted, setting, lacking, instead in (
            (cfg.loss == "fused", "loss: fused", liger_missing, "use loss: auto or chunked"),
            (cfg.liger_kernels, "liger_kernels: true", liger_missing, "set liger_kernels: false"),
            (cfg.compile_layers, "compile_layers: true", compile_missing, "set compile_layers: false")):
        missing = lacking() if wanted else None
        if missing:
            issues.append(f"{setting} needs {missing}; {instead}")
    if cfg.init_adapter and not (Path(cfg.init_adapter) / "adapter_config.json").is_file():
        issues.append(f"init_adapter: {cfg.init_adapter!r} holds no adapter (adapter_config.json); give a finished "
                      "finetune run folder")
    if cfg.chat_template and not Path(cfg.chat_template).is_file():
        issues.append(f"chat_template: no such file {cfg.chat_template!r}")
    run_dir = Path(cfg.output_dir)
    if run_dir.is_dir() and any(run_dir.iterdir()):
        if (run_dir / "config.yaml").exists():  # written when training began
            if not (cfg.resume or cfg.overwrite):
                issues.append(f"output_dir: {run_dir} already holds a run; pass --resume to continue it or "
                              "--overwrite to start over")
        elif cfg.overwrite:
            issues.append(f"output_dir: {run_dir} is not empty and holds no finetune run (no config.yaml); "
                          "refusing to delete it with --overwrite")
        elif not cfg.resume:
            issues.append(f"output_dir: {run_dir} is not empty and holds no finetune run (no config.yaml); "
                          "choose a new or empty folder")
    if issues:
        raise ValueError("cannot start:\n  - " + "\n  - ".join(issues))


def _is_main() -> bool:
    """Rank 0 (or a single process): the one that writes the run folder."""
    return int(os.environ.get("RANK", "0")) == 0


def prepare_output_dir(cfg: FinetuneConfig) -> tuple[Path, Path | None]:
    """The run folder and the checkpoint to resume from. Nothing is created or deleted here: that waits
    until training begins (``run``), so a start that fails leaves the folder as it was."""
    run_dir = Path(cfg.output_dir)
    resume_from = latest_checkpoint(run_dir / CHECKPOINTS) if cfg.resume else None
    if cfg.resume:
        old = run_dir / "config.yaml"
        if old.exists():
            _warn_config_changes(old, cfg)
        if resume_from is None:
            log.warning("--resume: no complete checkpoint in %s, starting from step 0", run_dir / CHECKPOINTS)
        if _is_main():
            _truncate_metrics(run_dir / "metrics.jsonl", _step_of(resume_from) if resume_from else 0)
    return run_dir, resume_from


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest checkpoint-N folder that is intact. A kill mid-save leaves a partial one (no
    trainer_state.json, or a file cut short); it is skipped with a warning naming what is damaged."""
    if not folder.is_dir():
        return None
    found = sorted((p for p in folder.iterdir() if re.fullmatch(r"checkpoint-\d+", p.name) and p.is_dir()),
                   key=_step_of, reverse=True)
    for ckpt in found:
        problem = checkpoint_problem(ckpt)
        if problem is None:
            return ckpt
        log.warning("skipping damaged checkpoint %s: %s", ckpt.name, problem)
    return None


def checkpoint_problem(ckpt: Path) -> str | None:
    """What makes ``ckpt`` unusable for a resume (missing or truncated files), or None when it is intact.

    Cheap structural checks, no tensor is loaded: trainer_state.json parses; the safetensors header parses
    and the file is as long as the header says; every torch ``.pt``/``.pth`` file (a zip archive) has its
    central directory, which a truncated write loses."""
    import zipfile

    if (ckpt / "checkpoint-is-incomplete.txt").exists():
        return "marked incomplete by the trainer"
    try:
        json.loads((ckpt / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "trainer_state.json is missing or cut short"
    for name in ("adapter_model.safetensors", "optimizer.pt"):
        if not (ckpt / name).is_file():
            return f"{name} is missing"
    for f in sorted(ckpt.glob("*.safetensors")):
        try:
            with open(f, "rb") as fh:
                n = int.from_bytes(fh.read(8), "little")
                header = json.loads(fh.read(n))
            end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
            if f.stat().st_size < 8 + n + end:
                return f"{f.name} is cut short ({f.stat().st_size} of {8 + n + end} bytes)"
        except (OSError, ValueError, KeyError, TypeError):
            return f"{f.name} is not a readable safetensors file"
    for f in sorted([*ckpt.glob("*.pt"), *ckpt.glob("*.pth")]):
        try:
            with zipfile.ZipFile(f) as zf:
                zf.infolist()
        except (OSError, zipfile.BadZipFile):
            return f"{f.name} is cut short or not a torch file"
    return None


def checkpoint_is_final(ckpt: Path) -> bool:
    """The checkpoint was saved at the run's last step."""
    state = json.loads((ckpt / "trainer_state.json").read_text(encoding="utf-8"))
    return state.get("max_steps", 0) > 0 and state.get("global_step", 0) >= state["max_steps"]


def restore_final_checkpoint(trainer, ckpt: Path) -> None:
    """Load the adapter and trainer state of a final checkpoint into ``trainer`` (no training step)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import TrainerState

    log.info("%s is the final checkpoint: finishing the run from it without training", ckpt.name)
    set_peft_model_state_dict(trainer.model, load_file(str(ckpt / "adapter_model.safetensors")))
    trainer.state = TrainerState.load_from_json(str(ckpt / "trainer_state.json"))


def _step_of(ckpt: Path) -> int:
    return int(ckpt.name.rsplit("-", 1)[1])


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop the metrics a killed run logged after the checkpoint we resume from."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                keep.append(line)
        except ValueError:  # a line cut short by the kill
            continue
    path.write_text("".join(k + "\n" for k in keep), encoding="utf-8")


def _warn_config_changes(old_path: Path, cfg: FinetuneConfig) -> None:
    import yaml

    old = yaml.safe_load(old_path.read_text(encoding="utf-8")) or {}
    ignore = {"resume", "overwrite"}
    changed = [k for k, v in cfg.__dict__.items() if k not in ignore and k in old and old[k] != v]
    if changed:
        log.warning("--resume with settings that differ from the saved config.yaml: %s", ", ".join(changed))


# --------------------------------------------------------------------------- tokenizer and data


# --------------------------------------------------------------------------- trainer


def check_optimizer(cfg: FinetuneConfig) -> None:
    """Say what a bitsandbytes optimizer does on this machine (paging needs CUDA) and keep bitsandbytes' own
    warning about it off the terminal."""
    import warnings

    import torch

    if cfg.optim.startswith("paged_") and not torch.cuda.is_available():
        log.info("optim %s: paging needs CUDA; on this CPU it runs as the unpaged %s optimizer", cfg.optim,
                 cfg.optim.removeprefix("paged_"))
        warnings.filterwarnings("ignore", message="Paged optimizers are not supported on CPU")


# --------------------------------------------------------------------------- outputs


def save_run(cfg, trainer, tokenizer, eot, run_dir: Path, stats: dict, dtype, started: str) -> None:
    from transformers import GenerationConfig

    if getattr(trainer, "is_fsdp_enabled", False):  # gather the sharded adapter into one file
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
    trainer.save_model(str(run_dir))  # adapter_model.safetensors + adapter_config.json (+ tokenizer)
    if not trainer.is_world_process_zero():
        return
    tokenizer.save_pretrained(str(run_dir))  # with the exact chat template used in training
    eos_ids = [tokenizer.convert_tokens_to_ids(eot)]
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos_ids:
        eos_ids.append(tokenizer.eos_token_id)
    GenerationConfig(eos_token_id=eos_ids, pad_token_id=tokenizer.pad_token_id).save_pretrained(str(run_dir))
    save_yaml(cfg, run_dir / "config.yaml", header=config_header(cfg))
    prov = provenance(cfg, eot, dtype, stats, trainer, started)
    write_json(run_dir / "provenance.json", prov)
    (run_dir / "README.md").write_text(model_card(cfg, prov, run_dir), encoding="utf-8")
