"""Weight normalization and spectral normalization as forward pre-hooks (``torch.nn.utils`` names).

Both replace a layer's parameter (``weight`` by default) by others and recompute the
weight from them before every forward, as a plain (non-parameter) attribute, so the
layer's own ``forward`` is unchanged and gradients reach the new parameters through
ordinary autograd:

* ``weight_norm`` (Salimans & Kingma, 2016, "Weight Normalization: A Simple
  Reparameterization to Accelerate Training of Deep Neural Networks"):
  ``w = g * v / ||v||``, the norm over every dim but ``dim``. Parameters ``weight_g``
  (``||w||``, shaped to broadcast) and ``weight_v`` (the direction).
* ``spectral_norm`` (Miyato et al., 2018, "Spectral Normalization for Generative
  Adversarial Networks"): ``w = weight_orig / sigma``, sigma the largest singular value
  of ``weight_orig`` seen as a matrix (``dim`` first, the other dims flattened),
  estimated by power iteration on the buffers ``weight_u`` and ``weight_v``. In training
  mode each forward first runs ``n_power_iterations`` steps (``v <- W^T u / ||.||``,
  ``u <- W v / ||.||``) outside the graph; then ``sigma = u . (W v)`` is differentiated
  with u and v held constant, as in PyTorch.

State-dict keys, parameter order, defaults and errors are PyTorch's, so a state dict of
a torch layer with the same normalization loads into ember and back. The newer
``torch.nn.utils.parametrizations`` API lives in ember/nn/utils/parametrizations.py; the
math below is shared by both.

Example::

    layer = nn.utils.weight_norm(nn.Linear(20, 40))    # layer.weight_g (40, 1), layer.weight_v (40, 20)
    disc = nn.utils.spectral_norm(nn.Conv2d(3, 64, 4))  # disc.weight_orig, disc.weight_u (64,), disc.weight_v (48,)
"""
from __future__ import annotations

import operator

from ember.autograd import no_grad
from ember.backend import xp_of
from ember.nn.module import Module
from ember.nn.parameter import Parameter
from ember.ops.distance import _vector_norm
from ember.ops.linalg import matmul
from ember.ops.shape import permute, reshape
from ember.random import rng_for
from ember.tensor import Tensor

__all__ = ["WeightNorm", "weight_norm", "remove_weight_norm", "SpectralNorm", "spectral_norm",
           "remove_spectral_norm"]


# ---- shared math -------------------------------------------------------------------------------
def norm_except_dim(v: Tensor, dim: int) -> Tensor:
    """The 2-norm of ``v`` over every dim but ``dim`` (``torch.norm_except_dim(v, 2, dim)``).

    Shape: ``v.shape`` with every dim but ``dim`` set to 1, so it broadcasts against v;
    ``dim == -1`` is PyTorch's code for the norm of the whole tensor (0-d result).
    Differentiable; the gradient is 0 where the norm is 0.
    """
    if dim == -1:
        return _vector_norm(v, 2.0, tuple(range(v.ndim)), keepdim=False)
    return _vector_norm(v, 2.0, tuple(a for a in range(v.ndim) if a != dim), keepdim=True)


def _check_dim(op: str, weight: Tensor, dim) -> int:
    """``dim`` as a non-negative axis of ``weight``, or IndexError/TypeError naming the op and the shape."""
    try:
        dim = operator.index(dim)
    except TypeError:
        raise TypeError(f"{op}: dim must be an int, got {type(dim).__name__}") from None
    nd = weight.ndim
    if not -nd <= dim < nd:
        raise IndexError(f"{op}: dim {dim} is out of range for a weight of shape {weight.shape} "
                         f"(expected a dim in [{-nd}, {nd - 1}])")
    return dim % nd


def _weight_norm_dim(op: str, weight: Tensor, dim: int | None) -> int:
    """PyTorch's dim convention: None and -1 mean the whole tensor (-1); other negatives wrap."""
    return -1 if dim is None or (not isinstance(dim, bool) and dim == -1) else _check_dim(op, weight, dim)


def weight_from_g_v(g: Tensor, v: Tensor, dim: int) -> Tensor:
    """``v * (g / ||v||)``, the norm over every dim but ``dim`` (whole tensor for -1): the weight of shape v.shape."""
    return v * (g / norm_except_dim(v, dim))


def weight_to_matrix(weight: Tensor, dim: int) -> Tensor:
    """``weight`` as a (weight.shape[dim], -1) matrix: ``dim`` moved first, the rest flattened (differentiable)."""
    if dim != 0:
        weight = permute(weight, (dim,) + tuple(d for d in range(weight.ndim) if d != dim))
    return reshape(weight, (weight.shape[0], -1))


def normalize_array(a, eps: float):
    """``a / max(||a||_2, eps)`` on a raw 1-D array (F.normalize's formula, no graph)."""
    xp = xp_of(a)
    return a / xp.maximum(xp.linalg.norm(a), eps).astype(a.dtype)


def random_unit(like, n: int, eps: float):
    """A random unit vector of length n with the dtype and device of array ``like`` (default generator)."""
    return normalize_array(rng_for(None, like).standard_normal(n).astype(like.dtype, copy=False), eps)


def _check_power_iterations(op: str, n_power_iterations: int) -> None:
    if n_power_iterations <= 0:
        raise ValueError(f"{op}: expected n_power_iterations to be positive, but got "
                         f"n_power_iterations={n_power_iterations}")


def _parameter(op: str, module: Module, name: str, error: type) -> Parameter:
    p = module._parameters.get(name) if isinstance(name, str) else None
    if p is None:
        have = ", ".join(k for k, v in module._parameters.items() if v is not None) or "none"
        why = "is None" if name in module._parameters else "does not exist"
        raise error(f"{op}: {type(module).__name__} has no parameter {name!r} to normalize "
                    f"(it {why}; parameters: {have})")
    return p


def _find_hook(module: Module, kind: type, name: str):
    for key, hook in module._forward_pre_hooks.items():
        if isinstance(hook, kind) and hook.name == name:
            return key, hook
    return None, None


# ---- weight normalization ----------------------------------------------------------------------
class WeightNorm:
    """The forward pre-hook of ``weight_norm``: sets ``module.<name>`` from ``<name>_g`` and ``<name>_v``."""

    def __init__(self, name: str, dim: int):
        self.name, self.dim = name, dim

    def compute_weight(self, module: Module) -> Tensor:
        """``g * v / ||v||`` from the module's current parameters (in the autograd graph)."""
        return weight_from_g_v(getattr(module, self.name + "_g"), getattr(module, self.name + "_v"), self.dim)

    @staticmethod
    def apply(module: Module, name: str, dim: int | None) -> "WeightNorm":
        if _find_hook(module, WeightNorm, name)[1] is not None:
            raise RuntimeError(f"weight_norm: cannot register two weight_norm hooks on the same parameter {name!r} "
                               f"of {type(module).__name__}; call remove_weight_norm first")
        weight = _parameter("weight_norm", module, name, AttributeError)
        fn = WeightNorm(name, _weight_norm_dim("weight_norm", weight, dim))
        with no_grad():
            g = norm_except_dim(weight, fn.dim)
        delattr(module, name)
        module.register_parameter(name + "_g", Parameter(g.data))
        module.register_parameter(name + "_v", Parameter(weight.data))
        setattr(module, name, fn.compute_weight(module))
        module.register_forward_pre_hook(fn)
        return fn

    def remove(self, module: Module) -> None:
        """Put back a plain parameter ``<name>`` holding the current ``g * v / ||v||``."""
        with no_grad():
            weight = self.compute_weight(module)
        delattr(module, self.name)
        delattr(module, self.name + "_g")
        delattr(module, self.name + "_v")
        module.register_parameter(self.name, Parameter(weight.data))

    def __call__(self, module: Module, inputs: tuple) -> None:
        setattr(module, self.name, self.compute_weight(module))


def weight_norm(module: Module, name: str = "weight", dim: int | None = 0) -> Module:
    """``module.<name>`` as ``g * v / ||v||`` (Salimans & Kingma, 2016), as ``torch.nn.utils.weight_norm``.

    The parameter ``<name>`` is replaced by ``<name>_g`` (shape: 1 in every dim but
    ``dim``; 0-d when ``dim`` is None) and ``<name>_v`` (the weight's shape), initialised
    so the weight is unchanged; a forward pre-hook recomputes ``module.<name>`` from them
    before every call. ``dim=0`` takes one norm per output unit/channel; ``dim=None`` one
    norm of the whole tensor (PyTorch also reads ``dim=-1`` that way; other negative dims
    count from the end).

    Returns:
        ``module`` itself.
    """
    WeightNorm.apply(module, name, dim)
    return module


def remove_weight_norm(module: Module, name: str = "weight") -> Module:
    """Undo ``weight_norm``: ``<name>`` becomes one plain parameter equal to the current ``g * v / ||v||``."""
    return _remove(module, WeightNorm, name, "weight_norm")


# ---- spectral normalization ---------------------------------------------------------------------
class SpectralNorm:
    """The forward pre-hook that ``spectral_norm`` registers: sets ``module.<name>`` to ``<name>_orig / sigma``."""

    def __init__(self, name: str = "weight", n_power_iterations: int = 1, dim: int = 0, eps: float = 1e-12):
        _check_power_iterations("spectral_norm", n_power_iterations)
        self.name, self.n_power_iterations, self.dim, self.eps = name, int(n_power_iterations), dim, float(eps)

    def reshape_weight_to_matrix(self, weight: Tensor) -> Tensor:
        """(weight.shape[dim], -1), differentiable."""
        return weight_to_matrix(weight, self.dim)

    def power_iteration_(self, w_mat, u, v) -> None:
        """``n_power_iterations`` steps on raw arrays, writing into u and v in place (v first, then u)."""
        for _ in range(self.n_power_iterations):
            v[...] = normalize_array(w_mat.T @ u, self.eps)
            u[...] = normalize_array(w_mat @ v, self.eps)

    def compute_weight(self, module: Module, do_power_iteration: bool) -> Tensor:
        """``weight_orig / (u . W v)``, after updating the buffers u and v when ``do_power_iteration``."""
        weight = getattr(module, self.name + "_orig")
        u_buf, v_buf = getattr(module, self.name + "_u"), getattr(module, self.name + "_v")
        w_mat = self.reshape_weight_to_matrix(weight)
        if do_power_iteration:
            self.power_iteration_(w_mat.data, u_buf.data, v_buf.data)
            u_buf._vc[0] += 1
            v_buf._vc[0] += 1
        # Copies in the graph: a later forward changes the buffers in place, and backward
        # of this one must still see the u and v it used.
        u, v = Tensor(u_buf.data.copy()), Tensor(v_buf.data.copy())
        sigma = matmul(u, matmul(w_mat, v))
        return weight / sigma

    @staticmethod
    def apply(module: Module, name: str, n_power_iterations: int, dim: int, eps: float) -> "SpectralNorm":
        if _find_hook(module, SpectralNorm, name)[1] is not None:
            raise RuntimeError(f"spectral_norm: cannot register two spectral_norm hooks on the same parameter "
                               f"{name!r} of {type(module).__name__}; call remove_spectral_norm first")
        weight = _parameter("spectral_norm", module, name, KeyError)
        fn = SpectralNorm(name, n_power_iterations, _check_dim("spectral_norm", weight, dim), eps)
        h, w = fn.reshape_weight_to_matrix(weight.detach()).shape
        u = random_unit(weight.data, h, fn.eps)
        v = random_unit(weight.data, w, fn.eps)
        delattr(module, name)
        module.register_parameter(name + "_orig", weight)
        # Until the first forward, module.<name> is the raw weight (its array, no graph), as in PyTorch.
        setattr(module, name, Tensor(weight.data))
        module.register_buffer(name + "_u", Tensor(u))
        module.register_buffer(name + "_v", Tensor(v))
        module.register_forward_pre_hook(fn)
        return fn

    def remove(self, module: Module) -> None:
        """Put back a plain parameter ``<name>`` equal to ``weight_orig / sigma`` with the current u and v."""
        with no_grad():
            weight = self.compute_weight(module, do_power_iteration=False)
        for suffix in ("", "_u", "_v", "_orig"):
            delattr(module, self.name + suffix)
        module.register_parameter(self.name, Parameter(weight.data))

    def __call__(self, module: Module, inputs: tuple) -> None:
        setattr(module, self.name, self.compute_weight(module, do_power_iteration=module.training))


def _default_dim(module: Module, dim: int | None) -> int:
    """0, or 1 for transposed convolutions (their weight is (in, out/groups, ...)), as PyTorch."""
    if dim is not None:
        return dim
    return 1 if getattr(type(module), "_transposed", False) else 0


def spectral_norm(module: Module, name: str = "weight", n_power_iterations: int = 1, eps: float = 1e-12,
                  dim: int | None = None) -> Module:
    """``module.<name>`` over its largest singular value (Miyato et al., 2018), as ``torch.nn.utils.spectral_norm``.

    The parameter ``<name>`` becomes ``<name>_orig``; buffers ``<name>_u`` (length
    ``weight.shape[dim]``) and ``<name>_v`` (the product of the other dims) hold the
    power-iteration vectors, drawn from N(0, 1) (default generator) and normalized. A
    forward pre-hook sets ``module.<name> = <name>_orig / sigma``; in training mode it
    first runs ``n_power_iterations`` steps that update u and v in place. ``dim``
    defaults to 0, or 1 for ConvTranspose layers; ``eps`` guards the normalizations.

    Returns:
        ``module`` itself.
    """
    SpectralNorm.apply(module, name, n_power_iterations, _default_dim(module, dim), eps)
    return module


def remove_spectral_norm(module: Module, name: str = "weight") -> Module:
    """Undo ``spectral_norm``: ``<name>`` becomes one plain parameter equal to the current ``weight_orig / sigma``."""
    return _remove(module, SpectralNorm, name, "spectral_norm")


def _remove(module: Module, cls, name: str, what: str) -> Module:
    """Take ``what``'s hook for ``name`` off ``module``, leaving one plain parameter."""
    key, hook = _find_hook(module, cls, name)
    if hook is None:
        raise ValueError(f"remove_{what}: {what} of {name!r} not found in {type(module).__name__}")
    hook.remove(module)
    del module._forward_pre_hooks[key]
    return module
