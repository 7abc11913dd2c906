"""Dropout layers: inverted dropout and alpha dropout in training, identity in eval (math in ember.ops.dropout)."""
from __future__ import annotations

from ember.nn.module import Module
from ember.ops import dropout as D
from ember.tensor import Tensor

__all__ = ["Dropout", "Dropout1d", "Dropout2d", "AlphaDropout", "FeatureAlphaDropout"]


class _DropoutNd(Module):
    def __init__(self, p: float = 0.5, inplace: bool = False, *, generator=None):
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ValueError(f"{type(self).__name__}: dropout probability has to be between 0 and 1, but got {p!r}")
        self.p, self.inplace, self.generator = float(p), inplace, generator

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"


class Dropout(_DropoutNd):
    """Zero elements with probability p and scale the rest by 1/(1-p) while training.

    ``generator`` (an ember.Generator) makes the masks reproducible independently of
    the default generator.
    """

    def forward(self, x: Tensor) -> Tensor:
        return D.dropout(x, self.p, self.training, generator=self.generator)


class Dropout1d(_DropoutNd):
    """Zero whole channels of (N, C, L) with probability p while training."""

    def forward(self, x: Tensor) -> Tensor:
        return D.dropout1d(x, self.p, self.training, generator=self.generator)


class Dropout2d(_DropoutNd):
    """Zero whole channels of (N, C, H, W) with probability p while training."""

    def forward(self, x: Tensor) -> Tensor:
        return D.dropout2d(x, self.p, self.training, generator=self.generator)


class AlphaDropout(_DropoutNd):
    """Alpha dropout for SELU networks (Klambauer et al., 2017) while training: dropped elements
    become SELU's saturation value, then an affine correction keeps mean 0 and variance 1."""

    def forward(self, x: Tensor) -> Tensor:
        return D.alpha_dropout(x, self.p, self.training, generator=self.generator)


class FeatureAlphaDropout(_DropoutNd):
    """Alpha dropout of whole channels of (N, C, *) while training (one draw per sample and channel)."""

    def forward(self, x: Tensor) -> Tensor:
        return D.feature_alpha_dropout(x, self.p, self.training, generator=self.generator)
