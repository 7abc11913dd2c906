"""Training checkpoints: model + optimizer + scheduler + RNG + progress in one safetensors file.

Layout: tensors ``model.<state_dict key>`` and ``optim.state.<param index>.<buffer>``; one JSON
metadata entry holding the run description (model name and kwargs, so ``ember eval``
can rebuild the model), optimizer hyper-parameters and scalar state, the scheduler's
state dict, RNG states and progress. Files are written atomically by ember.io.
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["save_training_checkpoint", "load_training_checkpoint", "read_checkpoint", "model_state"]


def save_training_checkpoint(path: str | Path, model, optimizer=None, scheduler=None, meta: dict | None = None) -> None:
    """Write everything needed to continue training (or to evaluate) to ``path``."""
    from ember import io

    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    meta = dict(meta or {})
    if optimizer is not None:
        opt_tensors, opt_meta = io.flatten_optimizer_state(optimizer.state_dict(), prefix="optim")
        tensors.update(opt_tensors)
        meta["optimizer"] = {"type": type(optimizer).__name__, **opt_meta}
    if scheduler is not None:
        meta["scheduler"] = {"type": type(scheduler).__name__, "state": scheduler.state_dict()}
    io.save_checkpoint(path, tensors, meta)


def read_checkpoint(path: str | Path) -> tuple[dict, dict]:
    """(tensors by name, metadata dict) of a checkpoint file."""
    from ember import io

    return io.load_checkpoint(path)


def model_state(tensors: dict) -> dict:
    """The model's state_dict part of a checkpoint's tensors."""
    return {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}


def load_training_checkpoint(path: str | Path, model, optimizer=None, scheduler=None) -> dict:
    """Restore ``model`` (and optimizer/scheduler when given) from ``path``; returns the metadata."""
    from ember import io

    tensors, meta = read_checkpoint(path)
    model.load_state_dict(model_state(tensors))
    if optimizer is not None and "optimizer" in meta:
        saved = meta["optimizer"]
        if saved.get("type") != type(optimizer).__name__:
            raise ValueError(f"{path}: the checkpoint was trained with {saved.get('type')}, "
                             f"not {type(optimizer).__name__}")
        optimizer.load_state_dict(io.unflatten_optimizer_state(tensors, saved, prefix="optim"))
    if scheduler is not None and "scheduler" in meta:
        scheduler.load_state_dict(meta["scheduler"]["state"])
    return meta
