"""``ember.nn.utils``, as ``torch.nn.utils``: gradient clipping and flattening parameters into one
vector (here), weight and spectral normalization as forward pre-hooks (norm_hooks.py), and the
parametrizations API (parametrize.py, parametrizations.py).

Clipping works on raw gradient arrays in place, after ``backward()`` and before
``optimizer.step()``::

    loss.backward()
    total = ember.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
    opt.step()
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from ember.backend import check_same_device, xp_of
from ember.errors import ShapeError
from ember.nn.utils import parametrizations, parametrize  # noqa: F401  (nn.utils.parametrizations.weight_norm, ...)
from ember.nn.utils.norm_hooks import remove_spectral_norm, remove_weight_norm, spectral_norm, weight_norm
from ember.tensor import Tensor

__all__ = ["clip_grad_norm_", "clip_grad_value_", "parameters_to_vector", "vector_to_parameters",
           "weight_norm", "remove_weight_norm", "spectral_norm", "remove_spectral_norm"]


def _as_list(parameters) -> list[Tensor]:
    return [parameters] if isinstance(parameters, Tensor) else list(parameters)


def clip_grad_norm_(parameters: Tensor | Iterable[Tensor], max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False) -> Tensor:
    """Scale all gradients together so their joint ``norm_type``-norm is at most ``max_norm``.

    The joint norm is the norm of the vector of per-tensor norms (the norm of all
    gradients concatenated). Gradients are multiplied by
    ``min(1, max_norm / (total + 1e-6))``, as in PyTorch. Parameters without a
    gradient are ignored.

    Returns:
        the total norm before clipping, a 0-d Tensor (0.0 when no parameter has a gradient).
    """
    grads = [p.grad for p in _as_list(parameters) if p.grad is not None]
    norm_type = float(norm_type)
    if not grads:
        return Tensor(np.asarray(0.0, dtype=np.float32))
    arrays = [g.data for g in grads]
    check_same_device("clip_grad_norm_", *arrays)
    xp = xp_of(*arrays)
    if norm_type == float("inf"):
        norms = xp.stack([xp.abs(a).max() if a.size else xp.zeros((), a.dtype) for a in arrays])
        total = norms.max()
    else:
        # Per-tensor norms first, then the norm of those: one pass over each gradient.
        norms = xp.stack([xp.linalg.norm(a.ravel(), ord=norm_type) for a in arrays])
        total = xp.linalg.norm(norms, ord=norm_type)
    if error_if_nonfinite and not bool(xp.isfinite(total)):
        raise RuntimeError(
            f"clip_grad_norm_: the total norm of order {norm_type} of the gradients is {float(total)}, so they "
            "cannot be clipped; pass error_if_nonfinite=False to clip anyway"
        )
    coef = min(float(max_norm) / (float(total) + 1e-6), 1.0)
    if coef < 1.0:  # multiplying by exactly 1 would change nothing
        # An infinite norm gives coef 0 and inf * 0 = nan, as in PyTorch; the caller
        # opted out of the check, so NumPy's warning would only be noise.
        with np.errstate(invalid="ignore"):
            for g in grads:
                g.data *= coef
                g._vc[0] += 1
    return Tensor(xp.asarray(total))


def clip_grad_value_(parameters: Tensor | Iterable[Tensor], clip_value: float) -> None:
    """Clamp every gradient element into ``[-clip_value, clip_value]`` in place."""
    clip_value = float(clip_value)
    for p in _as_list(parameters):
        if p.grad is not None:
            xp_of(p.grad.data).clip(p.grad.data, -clip_value, clip_value, out=p.grad.data)
            p.grad._vc[0] += 1


def parameters_to_vector(parameters: Iterable[Tensor]) -> Tensor:
    """All parameters flattened and concatenated into one 1-D tensor (differentiable)."""
    from ember.ops.shape import cat, reshape

    params = _as_list(parameters)
    if not params:
        raise ShapeError("parameters_to_vector: got no parameters")
    return cat([reshape(p, (-1,)) for p in params])


def vector_to_parameters(vec: Tensor, parameters: Iterable[Tensor]) -> None:
    """Copy consecutive slices of the 1-D ``vec`` into the parameters (in place, outside the graph)."""
    params = _as_list(parameters)
    if not isinstance(vec, Tensor) or vec.ndim != 1:
        raise ShapeError(f"vector_to_parameters: vec must be a 1-D Tensor, got {getattr(vec, 'shape', type(vec))}")
    total = sum(p.numel() for p in params)
    if vec.shape[0] != total:
        raise ShapeError(
            f"vector_to_parameters: vec has {vec.shape[0]} elements but the parameters hold {total}"
        )
    check_same_device("vector_to_parameters", vec.data, *(p.data for p in params))
    start = 0
    for p in params:
        n = p.numel()
        p.data[...] = vec.data[start:start + n].reshape(p.data.shape)
        p._vc[0] += 1
        start += n
