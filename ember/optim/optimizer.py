"""The Optimizer base class: parameter groups, per-parameter state, state_dict.

An optimizer holds ``param_groups`` (a list of dicts, each with its own ``params``
and hyper-parameters such as ``lr``) and ``state`` (a dict from parameter to the
buffers its update rule keeps, e.g. a momentum buffer). Subclasses implement only
``step``; everything here follows ``torch.optim.Optimizer`` so state dicts have the
same layout::

    {"state": {0: {"momentum_buffer": Tensor}, ...},
     "param_groups": [{"lr": 0.1, "momentum": 0.9, ..., "params": [0, 1, 2]}]}

Parameters in a state dict are numbered in the order they appear across the groups,
so a state dict can be loaded into a fresh optimizer built on the same model.
"""
from __future__ import annotations

import copy
import numbers
from typing import Any, Callable, Iterable

import numpy as np

from ember.autograd import enable_grad
from ember.backend import to_device
from ember.errors import ShapeError
from ember.ops import cuda_kernels
from ember.tensor import Tensor

__all__ = ["Optimizer", "required"]


class _Required:
    """Marker for a hyper-parameter that has no default (SGD's ``lr`` in old PyTorch)."""

    def __repr__(self) -> str:
        return "<required parameter>"


required = _Required()


class Optimizer:
    """Base class of every optimizer.

    Args:
        params: an iterable of Tensors, or of dicts ``{"params": [...], "lr": ...}``
            defining parameter groups with their own hyper-parameters.
        defaults: hyper-parameters used by groups that do not set them.
    """

    def __init__(self, params: Iterable, defaults: dict[str, Any]):
        self.defaults = dict(defaults)
        self.state: dict[Tensor, dict[str, Any]] = {}
        self.param_groups: list[dict[str, Any]] = []
        if isinstance(params, Tensor):
            raise TypeError(
                f"{type(self).__name__}: params must be an iterable of Tensors or dicts, got a single Tensor; "
                "wrap it in a list"
            )
        groups = list(params)
        if not groups:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    # ---- groups -------------------------------------------------------------------------------
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters (with optional per-group hyper-parameters)."""
        name = type(self).__name__
        if not isinstance(param_group, dict):
            raise TypeError(f"{name}.add_param_group: expected a dict, got {type(param_group).__name__}")
        group = dict(param_group)
        params = group["params"]
        group["params"] = [params] if isinstance(params, Tensor) else list(params)
        for p in group["params"]:
            if not isinstance(p, Tensor):
                raise TypeError(f"{name}: can only optimize Tensors, got {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError(f"{name}: can't optimize a non-leaf Tensor (it has grad_fn {p.grad_fn!r})")
            if p.data.dtype.kind not in "fc":
                raise TypeError(f"{name}: can only optimize floating point Tensors, got dtype {p.dtype}")
        if len({id(p) for p in group["params"]}) != len(group["params"]):
            raise ValueError(f"{name}: a parameter group contains the same parameter more than once")
        for key, default in self.defaults.items():
            if default is required and key not in group:
                raise ValueError(f"{name}: parameter group didn't specify a value of required option {key!r}")
            group.setdefault(key, default)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in group["params"]):
            raise ValueError(f"{name}: some parameters appear in more than one parameter group")
        self.param_groups.append(group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients: ``p.grad = None`` (default), or fill them with zeros."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.data[...] = 0

    # ---- update -------------------------------------------------------------------------------
    def step(self, closure: Callable[[], Any] | None = None):
        """Update the parameters once; ``closure`` (re-evaluating the loss) is optional."""
        raise NotImplementedError

    @staticmethod
    def _eval_closure(closure):
        if closure is None:
            return None
        with enable_grad():
            return closure()

    @staticmethod
    def _fused(x, g) -> bool:
        """Whether parameter x (with gradient g) is updated by ember/optim/cuda_step.py: CuPy float
        arrays, x contiguous (the kernel writes it through its address)."""
        return cuda_kernels.fits(x, g) and x.flags.c_contiguous

    @staticmethod
    def _by_dtype(items: list) -> list:
        """``(p, x, g, state)`` items split by dtype (one multi-tensor launch each); bumps each p's version."""
        batches: dict = {}
        for item in items:
            batches.setdefault(item[1].dtype, []).append(item)
            item[0]._vc[0] += 1  # a graph that saved p now refuses to backward through stale values
        return list(batches.values())

    @staticmethod
    def _check_args(opt: str, betas=None, **non_negative) -> None:
        """Raise ValueError naming ``opt`` and the argument for a negative (or NaN) hyper-parameter,
        or ``betas`` that are not a pair in [0, 1)."""
        for key, value in non_negative.items():
            if not 0.0 <= value:  # (NaN fails too, as in PyTorch)
                label = "learning rate lr" if key == "lr" else key
                raise ValueError(f"{opt}: invalid {label}={value} (must be >= 0)")
        if betas is not None and (len(betas) != 2 or not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0)):
            raise ValueError(f"{opt}: invalid betas={betas} (each must be in [0, 1))")

    @staticmethod
    def _update_grad(x, g, group: dict[str, Any]):
        """The gradient an update uses: negated when ``maximize``; with ``weight_decay`` the L2
        term ``g + weight_decay * x``, or, where ``decoupled_weight_decay`` is set, the weights
        shrink by ``lr * weight_decay`` in place instead (Loshchilov & Hutter's decoupled decay)."""
        if group["maximize"]:
            g = -g
        wd = group["weight_decay"]
        if wd != 0:
            if group.get("decoupled_weight_decay", False):
                x *= 1 - group["lr"] * wd
            else:
                g = g + wd * x
        return g

    def _grads(self, group: dict[str, Any]):
        """Yield ``(p, p.data, grad array, state)`` for parameters with a gradient.

        Parameters whose ``.grad`` is None (unused in the forward pass, or frozen) are
        skipped, as in PyTorch, and keep no state.
        """
        for p in group["params"]:
            if p.grad is None:
                continue
            g = p.grad.data
            if g.shape != p.data.shape:
                raise ShapeError(
                    f"{type(self).__name__}.step: gradient shape {tuple(g.shape)} does not match "
                    f"parameter shape {tuple(p.data.shape)}"
                )
            yield p, p.data, g, self.state.setdefault(p, {})

    # ---- state dict ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """``{'state': {index: {...}}, 'param_groups': [{..., 'params': [indices]}]}``.

        Buffers are the optimizer's own Tensors (not copies), as in PyTorch; save
        them (``ember.io``) or ``copy.deepcopy`` the dict to keep a snapshot.
        """
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            packed["params"] = []
            for p in group["params"]:
                index.setdefault(id(p), len(index))
                packed["params"].append(index[id(p)])
            groups.append(packed)
        state = {}
        for group in self.param_groups:
            for p in group["params"]:
                if p in self.state and self.state[p]:
                    state[index[id(p)]] = dict(self.state[p])
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore hyper-parameters and buffers saved by ``state_dict`` (of a same-shaped optimizer).

        Buffers are copied, and cast to their parameter's dtype and device (except
        ``step``), so a checkpoint saved on a GPU loads on the CPU and vice versa.
        """
        name = type(self).__name__
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"{name}.load_state_dict: state dict has {len(saved_groups)} parameter groups "
                f"but the optimizer has {len(self.param_groups)}"
            )
        for i, (mine, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if len(mine["params"]) != len(saved["params"]):
                raise ValueError(
                    f"{name}.load_state_dict: parameter group {i} has {len(saved['params'])} parameters in "
                    f"the state dict but {len(mine['params'])} in the optimizer"
                )
        id_to_param = {}
        for mine, saved in zip(self.param_groups, saved_groups):
            for idx, p in zip(saved["params"], mine["params"]):
                id_to_param[int(idx)] = p
        self.state = {}
        for idx, buffers in state_dict["state"].items():
            p = id_to_param.get(int(idx))
            if p is None:
                raise ValueError(f"{name}.load_state_dict: state for parameter {idx} but no such parameter")
            self.state[p] = {k: _cast_buffer(k, v, p) for k, v in buffers.items()}
        new_groups = []
        for mine, saved in zip(self.param_groups, saved_groups):
            group = copy.deepcopy({k: v for k, v in saved.items() if k != "params"})
            group = {k: (tuple(v) if isinstance(v, list) and k == "betas" else v) for k, v in group.items()}
            group["params"] = mine["params"]
            new_groups.append(group)
        self.param_groups = new_groups

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(k for k in group if k != "params"):
                lines.append(f"    {key}: {group[key]}")
        return "\n".join(lines) + "\n)"


def _cast_buffer(key: str, value, p: Tensor):
    """Copy a saved buffer onto ``p``'s device and dtype; ``step`` and scalar buffers stay numbers."""
    if key == "step":
        return int(value.item() if hasattr(value, "item") else value)
    if isinstance(value, numbers.Number):
        return value
    array = value.data if isinstance(value, Tensor) else value
    if not hasattr(array, "shape"):
        array = np.asarray(array)
    if array.ndim == 0 and p.data.ndim != 0:
        return float(array)  # a scalar kept as a 0-d tensor (PyTorch's NAdam mu_product)
    if tuple(array.shape) != tuple(p.data.shape):
        raise ShapeError(
            f"load_state_dict: buffer {key!r} has shape {tuple(array.shape)} but its parameter has "
            f"shape {tuple(p.data.shape)}"
        )
    array = to_device(array, p.device)
    return Tensor(array.astype(p.data.dtype, copy=True))
