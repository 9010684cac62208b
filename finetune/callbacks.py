"""What watches a training run from beside the transformers Trainer: metrics to JSONL, SIGTERM, non-finite losses.

``JsonlMetrics`` and ``StopOnSigterm`` are ordinary ``TrainerCallback`` objects; ``NonFiniteLossGuard`` checks
every training loss before the backward pass (a callback only sees the loss after the optimizer step).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path

from transformers import TrainerCallback

from contract.io import append_jsonl

log = logging.getLogger("finetune")


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


class JsonlMetrics(TrainerCallback):
    """Append every log (train loss, dev loss, learning rate, throughput) to metrics.jsonl."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            append_jsonl(self.path, {"step": state.global_step, "epoch": state.epoch, "time": round(time.time(), 3),
                                     **logs})


class StopOnSigterm(TrainerCallback):
    """On SIGTERM (preemption, ``kill``, a scheduler's time limit): finish the current step, save a
    checkpoint through the Trainer, stop. A second SIGTERM kills at once. (transformers'
    ``enable_jit_checkpoint`` waits 3 s first and saves before the optimizer step; this is simpler.)"""

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame):
        self.requested = True
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    def on_train_begin(self, args, state, control, **kwargs):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)

    def on_step_end(self, args, state, control, **kwargs):
        if self.requested:
            log.warning("SIGTERM: saving a checkpoint at step %d and stopping", state.global_step)
            control.should_save = True
            control.should_training_stop = True

    def on_train_end(self, args, state, control, **kwargs):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None


class NonFiniteLossGuard:
    """Stop training with a clear error the moment a training loss is NaN or infinite (before the
    backward pass and the optimizer step, so no checkpoint holds broken weights).

    Where the trainer computes the loss itself (``compute_loss_func``, finetune/loss.py) the guard checks
    what that function returns; otherwise the loss the model's forward returns."""

    def __init__(self, trainer):
        self.trainer = trainer
        self.handle = None
        self._loss_func = trainer.compute_loss_func
        if self._loss_func is not None:
            trainer.compute_loss_func = self._checked_loss
        else:
            self.handle = trainer.model.register_forward_hook(self._check_output)

    def _checked_loss(self, outputs, labels, num_items_in_batch=None):
        loss = self._loss_func(outputs, labels, num_items_in_batch=num_items_in_batch)
        if self.trainer.model.training:
            self._check(loss)
        return loss

    def _check_output(self, module, args, output):
        loss = getattr(output, "loss", None)
        if module.training and loss is not None:
            self._check(loss)

    def _check(self, loss):
        import torch

        if not torch.isfinite(loss.detach()).all():
            state = self.trainer.state
            raise TrainingDiverged(f"training loss is {loss.item()} at step {state.global_step + 1} "
                                   f"(epoch {state.epoch or 0:.2f})")

    def remove(self):
        if self.handle is not None:
            self.handle.remove()
        if self._loss_func is not None:
            self.trainer.compute_loss_func = self._loss_func
