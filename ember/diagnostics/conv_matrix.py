"""A convolution is a (very constrained) linear map: see its matrix.

For one sample of shape ``input_shape`` = (C, H, W), a conv layer without its bias is
a linear map from R^(C*H*W) to R^(OC*OH*OW). ``conv_matrix`` builds that map's dense
matrix M, so that

    conv(x).flatten() == M @ x.flatten() + bias_term

M is block-Toeplitz: every row is the same filter slid to another output location,
with zeros wherever the window does not reach (locality) and the same numbers in
every block (weight sharing). ``param_counts`` puts numbers on both constraints:
a dense layer has a free parameter for every entry of M, a locally connected layer
(locality without sharing) one per nonzero, and the conv one per filter weight.

The matrix is found by pushing the standard basis through the layer (column j of M
is conv(e_j) - conv(0)), which works for any linear layer and padding_mode, but it
holds C*H*W x OC*OH*OW numbers: use small inputs (e.g. 1x8x8).
"""
from __future__ import annotations

import numpy as np

from ember.autograd import no_grad
from ember.backend import asnumpy
from ember.tensor import Tensor

__all__ = ["conv_matrix", "conv_to_linear", "param_counts"]


def _per_sample_shape(conv, input_shape) -> tuple:
    shape = tuple(int(n) for n in input_shape)
    nd = getattr(conv, "_nd", 2)
    if len(shape) == nd + 2:  # a batch shape was given: drop N
        shape = shape[1:]
    if len(shape) != nd + 1:
        raise ValueError(f"conv_matrix: input_shape must be (C, *spatial) with {nd} spatial dims, got {input_shape}")
    return shape


def _apply(conv, x: np.ndarray) -> np.ndarray:
    dtype = conv.weight.dtype
    with no_grad():
        return asnumpy(conv(Tensor(x.astype(dtype))).data).astype(np.float64)


def conv_matrix(conv, input_shape, max_entries: int = 50_000_000) -> np.ndarray:
    """Dense matrix M (out_numel, in_numel) of ``conv`` (bias excluded) on one sample.

    Args:
        conv: a conv-like layer (Conv1d, Conv2d, ConvTranspose2d, LocallyConnected2d, ...).
        input_shape: (C, H, W) (or (N, C, H, W); N is ignored).
        max_entries: refuse matrices larger than this (they grow as (C*H*W)^2).

    Returns:
        float64 array M with conv(x)[0].flatten() == M @ x[0].flatten() + conv(0)[0].flatten().
    """
    shape = _per_sample_shape(conv, input_shape)
    n_in = int(np.prod(shape))
    zero = _apply(conv, np.zeros((1,) + shape))
    n_out = zero.size
    if n_in * n_out > max_entries:
        raise ValueError(f"conv_matrix: the matrix would have {n_in} x {n_out} entries; use a smaller input_shape")
    basis = np.eye(n_in).reshape((n_in,) + shape)  # sample j is the unit vector e_j
    cols = _apply(conv, basis).reshape(n_in, n_out) - zero.reshape(1, n_out)
    return np.ascontiguousarray(cols.T)


def conv_to_linear(conv, input_shape):
    """An ``nn.Linear(C*H*W, OC*OH*OW)`` computing the same function on flattened samples.

    ``linear(x.flatten(1)).reshape(conv(x).shape) == conv(x)`` up to rounding.
    """
    from ember.nn.linear import Linear

    shape = _per_sample_shape(conv, input_shape)
    M = conv_matrix(conv, shape)
    bias = _apply(conv, np.zeros((1,) + shape)).reshape(-1)
    dtype = conv.weight.dtype
    lin = Linear(M.shape[1], M.shape[0], bias=True, dtype=dtype)
    lin.weight.data[...] = M.astype(dtype)
    lin.bias.data[...] = bias.astype(dtype)
    return lin


def param_counts(conv, input_shape, verbose: bool = False) -> dict:
    """Free parameters of three layers with the conv's input/output shapes, side by side.

    Returns {"conv": ..., "locally_connected": ..., "dense": ...}, biases included (one
    per output channel for the conv, one per output unit for the other two):
      conv               the shared filters (what the layer actually has),
      locally_connected  one private filter per output unit: OH*OW times the conv's weights
                         (for ConvTranspose2d, whose units see varying numbers of inputs,
                         the number of nonzeros of ``conv_matrix``),
      dense              every entry of ``conv_matrix``.
    """
    from ember.nn.conv import ConvTranspose2d, LocallyConnected2d

    shape = _per_sample_shape(conv, input_shape)
    zero = _apply(conv, np.zeros((1,) + shape))
    n_in, n_out, out_ch = int(np.prod(shape)), zero.size, zero.shape[1]
    bias = getattr(conv, "bias", None) is not None
    w = conv.weight.numel()
    if isinstance(conv, LocallyConnected2d):
        per_unit = w // n_out
        counts = {"conv": out_ch * per_unit + out_ch * bias, "locally_connected": w + n_out * bias}
    elif isinstance(conv, ConvTranspose2d):
        nnz = int(np.count_nonzero(conv_matrix(conv, shape)))
        counts = {"conv": w + out_ch * bias, "locally_connected": nnz + n_out * bias}
    else:
        counts = {"conv": w + out_ch * bias, "locally_connected": w // out_ch * n_out + n_out * bias}
    counts["dense"] = n_in * n_out + n_out * bias
    if verbose:
        print(f"{type(conv).__name__} on input {shape} -> output {tuple(zero.shape[1:])}")
        for name, n in counts.items():
            print(f"  {name:18s} {n:>14,d} parameters  ({n / counts['conv']:,.0f}x conv)")
    return counts
