"""The training loop behind ``ember train``: epochs, validation, checkpoints, metrics.

Reproducibility: with a fixed seed every random draw comes from one of four generators,
the model's default generator (initialization, dropout), the shuffle generator, the
augmentation generator and the MixUp/CutMix generator; their states go into every
checkpoint, and a mid-epoch checkpoint also records the epoch-start states and the number
of batches done, so ``--resume`` replays the same batches and continues with the same loss trace.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import ember
from ember import nn
from ember.backend import asnumpy
from ember.cli import checkpoint as ckpt
from ember.cli.report import confusion_matrix

__all__ = ["Trainer", "NonFiniteLossError", "Progress"]


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite (the message names the step)."""


@dataclass
class Progress:
    """Where training stands; saved as JSON in every checkpoint."""

    epoch: int = 0  # the epoch being run (0-based); == epochs when finished
    step: int = 0  # batches done in this epoch
    global_step: int = 0
    best_val_acc: float = -1.0
    best_epoch: int = -1
    sums: dict = field(default_factory=lambda: {"loss": 0.0, "correct": 0, "seen": 0})
    epoch_start_rng: dict = field(default_factory=dict)  # shuffle/augment states at this epoch's start
    metrics_lines: int = 0  # lines of metrics.jsonl that belong to this state


class Trainer:
    """Train ``model`` with ``optimizer`` (and a per-step ``scheduler``) on DataLoaders.

    Args:
        train_loader, val_loader: ember DataLoaders yielding (x, y); ``val_loader`` may be None.
        shuffle_gen, aug_gen: the generators the train loader's sampler and transforms use.
        out_dir: where last/best checkpoints, metrics.jsonl and plots go.
        meta: JSON-able run description saved in checkpoints (model name and kwargs, data, ...).
        steps_per_epoch: batches per epoch (``--overfit-batch`` repeats one batch).
        mix, mix_gen: ``mix(x, y) -> (x, y_soft)`` applied to every training batch (MixUp/CutMix from
            ember.data.transforms) and the generator it draws from (its own: the loader's worker
            threads draw augmentations from ``aug_gen`` meanwhile); the loss then uses the mixed
            probabilities and the training accuracy compares predictions with the original labels.
    """

    def __init__(self, model: nn.Module, optimizer, scheduler, train_loader, val_loader, *, epochs: int,
                 out_dir: str | Path, device: str = "cpu", shuffle_gen=None, aug_gen=None, meta: dict | None = None,
                 log_every: int = 10, progress_bar: bool = True, steps_per_epoch: int | None = None,
                 label_smoothing: float = 0.0, mix=None, mix_gen=None):
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.train_loader, self.val_loader = train_loader, val_loader
        self.epochs, self.device = epochs, device
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.out_dir / "metrics.jsonl"
        self.shuffle_gen, self.aug_gen = shuffle_gen, aug_gen
        self.meta = dict(meta or {})
        self.log_every = max(1, int(log_every))
        self.progress_bar = progress_bar
        self.steps_per_epoch = steps_per_epoch or len(train_loader)
        self.label_smoothing = float(label_smoothing)
        self.mix, self.mix_gen = mix, mix_gen
        self.state = Progress()
        self.history: list[dict] = []

    # ---- RNG state ------------------------------------------------------------------------------
    def _rng_state(self) -> dict:
        gens = {"default": ember.random.default_generator, "shuffle": self.shuffle_gen, "augment": self.aug_gen,
                "mix": self.mix_gen}
        return {k: g.get_state() for k, g in gens.items() if g is not None}

    def _set_rng_state(self, states: dict) -> None:
        gens = {"default": ember.random.default_generator, "shuffle": self.shuffle_gen, "augment": self.aug_gen,
                "mix": self.mix_gen}
        for k, s in states.items():
            if gens.get(k) is not None:
                gens[k].set_state(s)

    # ---- checkpoints ----------------------------------------------------------------------------
    def save(self, name: str = "last.safetensors") -> Path:
        path = self.out_dir / name
        ckpt.save_training_checkpoint(
            path, self.model, self.optimizer, self.scheduler,
            meta={**self.meta, "progress": self.state.__dict__, "rng": self._rng_state()},
        )
        return path

    def resume(self, path: str | Path) -> None:
        """Restore model, optimizer, scheduler, RNG states and progress from ``path``."""
        meta = ckpt.load_training_checkpoint(path, self.model, self.optimizer, self.scheduler)
        self.state = Progress(**meta["progress"])
        self._set_rng_state(meta["rng"])
        if self.state.step > 0:  # mid-epoch: replay this epoch's order from its start states
            self._set_rng_state(self.state.epoch_start_rng)
        self._truncate_metrics(self.state.metrics_lines)
        self.history = [r for r in self._read_metrics() if r.get("type") == "epoch"]

    # ---- metrics --------------------------------------------------------------------------------
    def _log(self, record: dict) -> None:
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        self.state.metrics_lines += 1

    def _read_metrics(self) -> list[dict]:
        if not self.metrics_path.exists():
            return []
        with open(self.metrics_path) as f:
            return [json.loads(line) for line in f if line.strip()]

    def _truncate_metrics(self, n: int) -> None:
        lines = []
        if self.metrics_path.exists():
            with open(self.metrics_path) as f:
                lines = f.readlines()[:n]
        with open(self.metrics_path, "w") as f:
            f.writelines(lines)

    # ---- loops ----------------------------------------------------------------------------------
    def _batch(self, x, y):
        if self.device != "cpu":
            x, y = x.to(self.device), y.to(self.device)
        return x, y

    def train_epoch(self) -> dict:
        st = self.state
        epoch = st.epoch
        if st.step == 0:
            st.epoch_start_rng = {k: v for k, v in self._rng_state().items() if k != "default"}
            st.sums = {"loss": 0.0, "correct": 0, "seen": 0}
        self.model.train()
        bar = None
        if self.progress_bar:
            from tqdm import tqdm

            bar = tqdm(total=self.steps_per_epoch, initial=st.step, desc=f"epoch {epoch + 1}/{self.epochs}",
                       unit="batch", dynamic_ncols=True, leave=False)
        t0, seen0 = time.perf_counter(), st.sums["seen"]
        batches = iter(self.train_loader)
        skip = st.step  # batches already trained before a mid-epoch checkpoint: draw them again, unused
        for _ in range(skip):
            x, y = next(batches)
            if self.mix is not None:  # its draws too, so the generator continues where it stopped
                self.mix(x, y)
        try:
            for x, y in batches:
                if st.step >= self.steps_per_epoch:
                    break
                x, y = self._batch(x, y)
                # A diverging run overflows somewhere before its loss turns inf/NaN; the finiteness
                # check below reports that with the step number, so NumPy's own warnings are muted.
                with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                    target = y
                    if self.mix is not None:
                        x, target = self.mix(x, y)
                    out = self.model(x)
                    loss = nn.functional.cross_entropy(out, target, label_smoothing=self.label_smoothing)
                    value = float(loss.item())
                    if not math.isfinite(value):
                        raise NonFiniteLossError(
                            f"non-finite loss ({value}) at epoch {epoch + 1}, step {st.step + 1} (global step "
                            f"{st.global_step + 1}); stopping. Try a smaller --lr or check the inputs.")
                    self.optimizer.zero_grad()
                    loss.backward()
                    self.optimizer.step()
                lr = self.optimizer.param_groups[0]["lr"]
                if self.scheduler is not None:
                    self.scheduler.step()
                n = int(y.shape[0])
                correct = int(asnumpy((out.data.argmax(axis=1) == y.data)).sum())
                st.sums["loss"] += value * n
                st.sums["correct"] += correct
                st.sums["seen"] += n
                st.step += 1
                st.global_step += 1
                if st.global_step % self.log_every == 0:
                    self._log({"type": "step", "epoch": epoch + 1, "step": st.step, "global_step": st.global_step,
                               "loss": value, "lr": lr})
                if bar is not None:
                    rate = (st.sums["seen"] - seen0) / max(time.perf_counter() - t0, 1e-9)
                    bar.set_postfix(loss=f"{st.sums['loss'] / st.sums['seen']:.4f}",
                                    acc=f"{100 * st.sums['correct'] / st.sums['seen']:.2f}%",
                                    img_s=f"{rate:.0f}", refresh=False)
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        seconds = time.perf_counter() - t0
        s = st.sums
        return {"train_loss": s["loss"] / max(s["seen"], 1), "train_acc": s["correct"] / max(s["seen"], 1),
                "images_per_s": (s["seen"] - seen0) / max(seconds, 1e-9), "seconds": seconds}

    def evaluate(self, loader, num_classes: int | None = None) -> dict:
        """Loss, accuracy and predictions of the model on ``loader`` (eval mode, no graph)."""
        return evaluate_model(self.model, loader, self.device, num_classes)

    def fit(self, print_fn=print) -> list[dict]:
        """Run the remaining epochs; returns the per-epoch records."""
        st = self.state
        while st.epoch < self.epochs:
            rec = self.train_epoch()
            rec["epoch"] = st.epoch + 1
            rec["lr"] = self.optimizer.param_groups[0]["lr"]
            if self.val_loader is not None:
                v = self.evaluate(self.val_loader)
                rec["val_loss"], rec["val_acc"] = v["loss"], v["accuracy"]
            score = rec.get("val_acc", rec["train_acc"])
            improved = score > st.best_val_acc
            if improved:
                st.best_val_acc, st.best_epoch = score, st.epoch + 1
            line = (f"epoch {rec['epoch']:>3}/{self.epochs}  train loss {rec['train_loss']:.4f} "
                    f"acc {100 * rec['train_acc']:.2f}%")
            if "val_acc" in rec:
                line += f"  val loss {rec['val_loss']:.4f} acc {100 * rec['val_acc']:.2f}%"
            line += f"  {rec['images_per_s']:.0f} img/s  {rec['seconds']:.1f}s" + ("  *" if improved else "")
            print_fn(line)
            self._log({"type": "epoch", **rec})
            self.history.append(rec)
            st.epoch += 1
            st.step = 0
            self.save("last.safetensors")
            if improved:
                self.save("best.safetensors")
        return self.history


def evaluate_model(model: nn.Module, loader, device: str = "cpu", num_classes: int | None = None) -> dict:
    """Mean cross-entropy, accuracy, labels and predictions over a loader (eval mode, no graph)."""
    was_training = model.training
    model.eval()
    total, n = 0.0, 0
    preds, labels = [], []
    with ember.no_grad():
        for x, y in loader:
            if device != "cpu":
                x, y = x.to(device), y.to(device)
            out = model(x)
            total += float(nn.functional.cross_entropy(out, y, reduction="sum").item())
            n += int(y.shape[0])
            preds.append(asnumpy(out.data.argmax(axis=1)))
            labels.append(asnumpy(y.data))
    model.train(was_training)
    p = np.concatenate(preds) if preds else np.zeros(0, np.int64)
    t = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    res = {"loss": total / max(n, 1), "accuracy": float((p == t).mean()) if n else 0.0, "pred": p, "target": t}
    if num_classes is not None:
        res["confusion"] = confusion_matrix(t, p, num_classes)
    return res


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a text file by writing a temporary twin and renaming it (never half-written)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
