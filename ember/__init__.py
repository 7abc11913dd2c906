"""ember: a deep-learning framework you can read end to end.

The public surface mirrors PyTorch: ``ember.Tensor``, ``ember.tensor``, factories,
``ember.no_grad``, ``ember.manual_seed``, and the subpackages ``nn``, ``optim``,
``data``, ``models`` and ``diagnostics``.
"""
from ember.tensor import Tensor
from ember.autograd import enable_grad, is_grad_enabled, no_grad, set_grad_enabled  # noqa: F401
from ember.backend import Device as device
from ember.random import Generator, manual_seed
from ember.factories import *  # noqa: F401,F403
from ember.ops.elementwise import (  # noqa: F401
    abs, add, clamp, clip, cos, div, exp, log, log1p, maximum, minimum, mul, neg, pow, rsqrt, sign, sin, sqrt,
    square, sub, where,
)
from ember.ops.activation import relu, sigmoid, tanh  # noqa: F401
from ember.ops.compare import (  # noqa: F401
    eq, ge, gt, isfinite, isnan, le, logical_and, logical_not, logical_or, lt, ne,
)
from ember.ops.linalg import bmm, dot, einsum, matmul, mm, outer  # noqa: F401
from ember.ops.reduce import (  # noqa: F401
    amax, amin, argmax, argmin, logsumexp, log_softmax, max, mean, min, norm, prod, softmax, std, sum, var,
)
from ember.ops.shape import (  # noqa: F401
    broadcast_to, cat, chunk, concatenate, flatten, flip, permute, reshape, split, squeeze, stack, transpose,
    unbind, unsqueeze,
)
from ember.ops.select import argsort, cumsum, gather, masked_fill, narrow, roll, sort, t, topk  # noqa: F401
from ember.io import load, save
from ember import cuda, nn, optim, data, models, diagnostics  # noqa: E402,F401

__version__ = "0.1.0"
