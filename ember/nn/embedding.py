"""Embedding: a learnable lookup table of num_embeddings vectors (math in ember.ops.embedding)."""
from __future__ import annotations

import numpy as np

from ember.autograd import no_grad
from ember.errors import ShapeError
from ember.nn import init
from ember.nn.module import Module, Parameter
from ember.ops.embedding import embedding
from ember.tensor import Tensor

__all__ = ["Embedding"]


class Embedding(Module):
    """Maps integer indices (*) to rows of ``weight`` (num_embeddings, embedding_dim): (*, embedding_dim).

    ``weight`` starts as N(0, 1), as in PyTorch, with the ``padding_idx`` row (if any) zeroed;
    that row never receives a gradient. ``max_norm`` rescales looked-up rows in place to norm
    at most ``max_norm`` before each lookup; ``scale_grad_by_freq`` divides each row's gradient
    by its count in the batch. ``_weight`` uses a given (num_embeddings, embedding_dim) tensor as
    the table (its array is shared, not copied, and the padding row is left as it is);
    ``_freeze`` makes it not require grad. ``sparse=True`` is not supported.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None,
                 max_norm: float | None = None, norm_type: float = 2.0, scale_grad_by_freq: bool = False,
                 sparse: bool = False, _weight=None, _freeze: bool = False, device=None, dtype=None,
                 generator=None):
        super().__init__()
        if sparse:
            raise NotImplementedError("Embedding: sparse=True (sparse gradients) is not supported by ember; "
                                      "use sparse=False, the gradient is then a dense (num_embeddings, dim) array")
        if num_embeddings < 0 or embedding_dim < 0:
            raise ValueError(f"Embedding: sizes must be non-negative, got num_embeddings={num_embeddings}, "
                             f"embedding_dim={embedding_dim}")
        self.num_embeddings, self.embedding_dim = int(num_embeddings), int(embedding_dim)
        if padding_idx is not None:
            if not -self.num_embeddings <= padding_idx < self.num_embeddings:
                raise ValueError(f"Embedding: padding_idx {padding_idx} must be within num_embeddings "
                                 f"{self.num_embeddings} (in [{-self.num_embeddings}, {self.num_embeddings}))")
            padding_idx = int(padding_idx) % self.num_embeddings
        self.padding_idx, self.max_norm, self.norm_type = padding_idx, max_norm, norm_type
        self.scale_grad_by_freq, self.sparse = scale_grad_by_freq, sparse
        if _weight is None:
            dtype = np.dtype(dtype or np.float32)
            self.weight = Parameter(np.empty((self.num_embeddings, self.embedding_dim), dtype=dtype),
                                    requires_grad=not _freeze)
            self.reset_parameters(generator=generator)
        else:
            shape = tuple(_weight.shape)
            if shape != (self.num_embeddings, self.embedding_dim):
                raise ShapeError(f"Embedding: _weight has shape {shape} but num_embeddings and embedding_dim "
                                 f"need ({self.num_embeddings}, {self.embedding_dim})")
            self.weight = Parameter(_weight, requires_grad=not _freeze)
        if device is not None:
            self.to(device)

    def reset_parameters(self, generator=None) -> None:
        """Redraw the weight from N(0, 1) and zero the padding row."""
        init.normal_(self.weight, generator=generator)
        if self.padding_idx is not None:
            with no_grad():
                self.weight[self.padding_idx] = 0

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return embedding(input, self.weight, self.padding_idx, self.max_norm, self.norm_type,
                         self.scale_grad_by_freq, self.sparse)

    def extra_repr(self) -> str:
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        if self.padding_idx is not None:
            s += f", padding_idx={self.padding_idx}"
        if self.max_norm is not None:
            s += f", max_norm={self.max_norm}"
        if self.norm_type != 2:
            s += f", norm_type={self.norm_type}"
        if self.scale_grad_by_freq is not False:
            s += f", scale_grad_by_freq={self.scale_grad_by_freq}"
        return s

    @classmethod
    def from_pretrained(cls, embeddings: Tensor, freeze: bool = True, padding_idx: int | None = None,
                        max_norm: float | None = None, norm_type: float = 2.0, scale_grad_by_freq: bool = False,
                        sparse: bool = False) -> "Embedding":
        """An Embedding whose table is ``embeddings`` (num_embeddings, embedding_dim), shared, not
        copied; ``freeze`` (default) keeps it out of training (``weight.requires_grad = False``)."""
        if len(embeddings.shape) != 2:
            raise ShapeError(f"Embedding.from_pretrained: embeddings must be 2-D (num_embeddings, embedding_dim), "
                             f"got shape {tuple(embeddings.shape)}")
        rows, cols = embeddings.shape
        return cls(rows, cols, padding_idx=padding_idx, max_norm=max_norm, norm_type=norm_type,
                   scale_grad_by_freq=scale_grad_by_freq, sparse=sparse, _weight=embeddings, _freeze=freeze)
