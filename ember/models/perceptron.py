"""Rosenblatt's perceptron with its own learning rule (no backprop).

Rosenblatt, "The perceptron: a probabilistic model for information storage and
organization in the brain", Psychological Review 65(6), 1958. The convergence
theorem (Novikoff 1962) guarantees a separating hyperplane is found when one
exists; Minsky & Papert (1969) showed XOR has none, which is why ``fit`` never
reaches zero errors on XOR while a two-layer MLP trained by backprop does.
"""
from __future__ import annotations

import numpy as np

from ember import nn
from ember.backend import asnumpy
from ember.tensor import Tensor

__all__ = ["Perceptron"]


class Perceptron(nn.Module):
    """A single threshold unit: ``yhat = 1 if w . x + b > 0 else 0``.

    Args:
        in_features: size of each input sample.

    Shapes: input (N, in_features) -> output (N,) of 0./1. floats.
    The parameters are ``weight`` (1, in_features) and ``bias`` (1,), as in nn.Linear,
    initialized to zero (the rule does not need random symmetry breaking).
    """

    def __init__(self, in_features: int = 2):
        super().__init__()
        if in_features < 1:
            raise ValueError(f"Perceptron: in_features must be >= 1, got {in_features}")
        self.in_features = in_features
        self.weight = nn.Parameter(Tensor(np.zeros((1, in_features), np.float32)))
        self.bias = nn.Parameter(Tensor(np.zeros((1,), np.float32)))

    def decision_function(self, x) -> np.ndarray:
        """The raw score ``w . x + b`` as a NumPy array of shape (N,)."""
        x = self._as_array(x)
        return x @ asnumpy(self.weight.data)[0] + asnumpy(self.bias.data)[0]

    def forward(self, x) -> Tensor:
        return Tensor((self.decision_function(x) > 0).astype(np.float32))

    def predict(self, x) -> np.ndarray:
        """Predicted 0/1 labels as a NumPy int array of shape (N,)."""
        return (self.decision_function(x) > 0).astype(np.int64)

    def fit(self, x, y, epochs: int = 100, lr: float = 1.0, shuffle: bool = False, seed: int = 0) -> list[int]:
        """Train with the perceptron rule ``w += lr * (y - yhat) * x``, ``b += lr * (y - yhat)``.

        Args:
            x: (N, in_features) inputs. y: (N,) labels in {0, 1}.
            epochs: passes over the data; stops early after a pass with no mistakes.
            shuffle: visit samples in a random order each pass (seeded by ``seed``).

        Returns the number of mistakes in each pass (ends with 0 iff it converged).
        """
        x = self._as_array(x)
        y = np.asarray(asnumpy(y.data) if isinstance(y, Tensor) else y).reshape(-1)
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"Perceptron.fit: x has {x.shape[0]} samples but y has {y.shape[0]}")
        if not np.isin(y, (0, 1)).all():
            raise ValueError("Perceptron.fit: labels must be 0 or 1")
        w = asnumpy(self.weight.data)[0].astype(np.float64)
        b = float(asnumpy(self.bias.data)[0])
        rng = np.random.default_rng(seed)
        history = []
        for _ in range(epochs):
            order = rng.permutation(len(y)) if shuffle else np.arange(len(y))
            mistakes = 0
            # The rule is online: each update changes the prediction for the next sample,
            # so this loop over samples is the algorithm itself.
            for i in order:
                yhat = 1.0 if x[i] @ w + b > 0 else 0.0
                err = y[i] - yhat
                if err != 0:
                    w += lr * err * x[i]
                    b += lr * err
                    mistakes += 1
            history.append(mistakes)
            if mistakes == 0:
                break
        with_dtype = self.weight.data.dtype
        self.weight.data[...] = w.astype(with_dtype)[None]
        self.bias.data[...] = np.asarray([b], dtype=with_dtype)
        return history

    def _as_array(self, x) -> np.ndarray:
        a = np.asarray(asnumpy(x.data) if isinstance(x, Tensor) else x, dtype=np.float64)
        if a.ndim != 2 or a.shape[1] != self.in_features:
            raise ValueError(f"Perceptron: expected input of shape (N, {self.in_features}), got {a.shape}")
        return a

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}"
