"""Weight and spectral normalization as parametrizations (``torch.nn.utils.parametrizations`` names).

The newer form of ember/nn/utils/norm_hooks.py's hooks, built on ember/nn/utils/parametrize.py:
``module.weight`` is computed each time it is read, from tensors held in
``module.parametrizations.weight``:

* ``weight_norm`` (Salimans & Kingma, 2016): ``original0`` is g (``||w||`` over every dim
  but ``dim``), ``original1`` is v; the weight is ``g * v / ||v||``.
* ``spectral_norm`` (Miyato et al., 2018): ``original`` is the raw weight; the
  parametrization module ``parametrizations.weight[0]`` holds the power-iteration buffers
  ``_u`` and ``_v``. Unlike the hook version, registration runs 15 power-iteration steps,
  each step updates u before v, and a 1-D weight is simply divided by its norm (PyTorch's
  choices, kept so results match).

State-dict keys are PyTorch's (``parametrizations.weight.original0``, ``parametrizations.weight.0._u``).
``parametrize.remove_parametrizations(module, "weight")`` turns the weight back into a plain parameter.
"""
from __future__ import annotations

from ember.nn.utils import parametrize
from ember.nn.module import Module
from ember.nn.utils.norm_hooks import (_check_dim, _check_power_iterations, _default_dim, _weight_norm_dim, norm_except_dim,
                                 normalize_array, random_unit, weight_from_g_v, weight_to_matrix)
from ember.ops.distance import normalize
from ember.ops.linalg import matmul
from ember.tensor import Tensor

__all__ = ["weight_norm", "spectral_norm"]


class _WeightNorm(Module):
    """``forward(g, v) = g * v / ||v||``; ``right_inverse(w) = (||w||, w)``. ``dim=-1``: norm of the whole tensor."""

    def __init__(self, dim: int = 0):
        super().__init__()
        self.dim = dim

    def forward(self, weight_g: Tensor, weight_v: Tensor) -> Tensor:
        return weight_from_g_v(weight_g, weight_v, self.dim)

    def right_inverse(self, weight: Tensor) -> tuple:
        return norm_except_dim(weight, self.dim), weight


class _SpectralNorm(Module):
    """``forward(w) = w / sigma(w)``, sigma by power iteration on buffers ``_u``, ``_v`` (updated when training)."""

    def __init__(self, weight: Tensor, n_power_iterations: int = 1, dim: int = 0, eps: float = 1e-12):
        super().__init__()
        self.dim = _check_dim("spectral_norm", weight, dim)
        _check_power_iterations("spectral_norm", n_power_iterations)
        self.eps = float(eps)
        self.n_power_iterations = int(n_power_iterations)
        if weight.ndim > 1:
            w_mat = weight_to_matrix(weight.detach(), self.dim).data
            h, w = w_mat.shape
            self.register_buffer("_u", Tensor(random_unit(weight.data, h, self.eps)))
            self.register_buffer("_v", Tensor(random_unit(weight.data, w, self.eps)))
            self._power_method(w_mat, 15)

    def _power_method(self, w_mat, n_power_iterations: int) -> None:
        """Power iteration on raw arrays, in place into the buffers: u from v first, then v from u."""
        u, v = self._u.data, self._v.data
        for _ in range(n_power_iterations):
            u[...] = normalize_array(w_mat @ v, self.eps)
            v[...] = normalize_array(w_mat.T @ u, self.eps)
        self._u._vc[0] += 1
        self._v._vc[0] += 1

    def forward(self, weight: Tensor) -> Tensor:
        if weight.ndim == 1:
            return normalize(weight, dim=0, eps=self.eps)
        w_mat = weight_to_matrix(weight, self.dim)
        if self.training:
            self._power_method(w_mat.data, self.n_power_iterations)
        # Copies: a later training-mode read changes the buffers in place.
        u, v = Tensor(self._u.data.copy()), Tensor(self._v.data.copy())
        sigma = matmul(u, matmul(w_mat, v))
        return weight / sigma

    def right_inverse(self, value: Tensor) -> Tensor:
        return value


def weight_norm(module: Module, name: str = "weight", dim: int | None = 0) -> Module:
    """Weight normalization (Salimans & Kingma, 2016), as ``torch.nn.utils.parametrizations.weight_norm``.

    ``module.parametrizations.<name>.original0`` is g (1 in every dim but ``dim``; 0-d for
    ``dim=None``), ``original1`` is v (the weight's shape); reading ``module.<name>``
    gives ``g * v / ||v||``.

    Returns:
        ``module`` itself.
    """
    weight = getattr(module, name, None) if isinstance(name, str) else None
    if not isinstance(weight, Tensor):
        raise ValueError(f"weight_norm: {type(module).__name__} has no parameter, buffer or parametrized tensor "
                         f"named {name!r}")
    parametrize.register_parametrization(module, name, _WeightNorm(_weight_norm_dim("weight_norm", weight, dim)),
                                         unsafe=True)
    return module


def spectral_norm(module: Module, name: str = "weight", n_power_iterations: int = 1, eps: float = 1e-12,
                  dim: int | None = None) -> Module:
    """Spectral normalization (Miyato et al., 2018), as ``torch.nn.utils.parametrizations.spectral_norm``.

    Reading ``module.<name>`` gives ``original / sigma``; in training mode each read first
    runs ``n_power_iterations`` steps on ``parametrizations.<name>[0]._u`` and ``._v``.
    ``dim`` defaults to 0, or 1 for ConvTranspose layers.

    Returns:
        ``module`` itself.
    """
    weight = getattr(module, name, None) if isinstance(name, str) else None
    if not isinstance(weight, Tensor):
        raise ValueError(f"spectral_norm: {type(module).__name__} has no parameter or buffer named {name!r}")
    sn = _SpectralNorm(weight, n_power_iterations, _default_dim(module, dim), eps)
    parametrize.register_parametrization(module, name, sn)
    return module
