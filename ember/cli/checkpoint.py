"""Training checkpoints: model + optimizer + scheduler + RNG + progress in one safetensors file.

Layout: tensors ``model.<state_dict key>`` and ``optim.<param index>.<buffer>``; one JSON
metadata entry holding the run description (model name and kwargs, so ``ember eval``
can rebuild the model), optimizer hyper-parameters and scalar state, the scheduler's
state dict, RNG states and progress. Files are written atomically by ember.io.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ember.backend import asnumpy
from ember.tensor import Tensor

__all__ = ["save_training_checkpoint", "load_training_checkpoint", "read_checkpoint", "model_state"]


def _array(v) -> np.ndarray:
    return np.ascontiguousarray(asnumpy(v.data if isinstance(v, Tensor) else v))


def save_training_checkpoint(path: str | Path, model, optimizer=None, scheduler=None, meta: dict | None = None) -> None:
    """Write everything needed to continue training (or to evaluate) to ``path``."""
    from ember import io

    tensors = {f"model.{k}": _array(v) for k, v in model.state_dict().items()}
    meta = dict(meta or {})
    if optimizer is not None:
        sd = optimizer.state_dict()
        scalars: dict = {}
        for idx, buffers in sd["state"].items():
            for name, v in buffers.items():
                if v is None:  # e.g. a momentum buffer not created yet
                    continue
                if isinstance(v, Tensor) or hasattr(v, "shape") and np.ndim(asnumpy(v)) > 0:
                    tensors[f"optim.{idx}.{name}"] = _array(v)
                else:
                    scalars.setdefault(str(idx), {})[name] = v.item() if hasattr(v, "item") else v
        meta["optimizer"] = {"type": type(optimizer).__name__, "param_groups": sd["param_groups"],
                             "scalars": scalars}
    if scheduler is not None:
        meta["scheduler"] = {"type": type(scheduler).__name__, "state": scheduler.state_dict()}
    io.save_checkpoint(path, tensors, meta)


def read_checkpoint(path: str | Path) -> tuple[dict, dict]:
    """(tensors as NumPy arrays, metadata dict) of a checkpoint file."""
    from ember import io

    return io.load_checkpoint(path)


def model_state(tensors: dict) -> dict:
    """The model's state_dict part of a checkpoint's tensors."""
    return {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}


def load_training_checkpoint(path: str | Path, model, optimizer=None, scheduler=None) -> dict:
    """Restore ``model`` (and optimizer/scheduler when given) from ``path``; returns the metadata."""
    tensors, meta = read_checkpoint(path)
    model.load_state_dict(model_state(tensors))
    if optimizer is not None and "optimizer" in meta:
        saved = meta["optimizer"]
        state: dict = {}
        for k, v in tensors.items():
            if k.startswith("optim."):
                _, idx, name = k.split(".", 2)
                state.setdefault(int(idx), {})[name] = Tensor(v)
        for idx, scalars in saved.get("scalars", {}).items():
            state.setdefault(int(idx), {}).update(scalars)
        optimizer.load_state_dict({"state": state, "param_groups": saved["param_groups"]})
    if scheduler is not None and "scheduler" in meta:
        scheduler.load_state_dict(meta["scheduler"]["state"])
    return meta
