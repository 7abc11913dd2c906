"""ember.Tensor: an array, an optional gradient, and a link into the autograd graph.

``Tensor.data`` is the raw NumPy (or CuPy) array; every operator delegates to a
function in ``ember.ops``, which is where the math and its backward live.
"""
from __future__ import annotations

import numbers

import numpy as np

from ember.backend import Device, asnumpy, device_of, to_device, xp_of
from ember.errors import GraphError, ShapeError


class Tensor:
    """A multi-dimensional array that can record the ops applied to it.

    Args:
        data: a NumPy/CuPy array (used as is, not copied).
        requires_grad: whether backward should compute a gradient for it.
    """

    __slots__ = ("data", "grad", "requires_grad", "grad_fn", "_vc", "_hooks", "__weakref__")
    __array_priority__ = 1000  # make ``ndarray + Tensor`` call Tensor.__radd__

    def __init__(self, data, requires_grad: bool = False):
        self.data = data
        self.grad: Tensor | None = None
        self.requires_grad = requires_grad
        self.grad_fn = None
        self._vc = [0]  # version counter, shared with detached aliases
        self._hooks = None  # gradient hooks of a leaf (register_hook); a non-leaf's live on its grad_fn

    # ---- properties -------------------------------------------------------------------------
    @property
    def shape(self) -> tuple:
        return tuple(self.data.shape)

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def device(self) -> Device:
        return device_of(self.data)

    @property
    def is_leaf(self) -> bool:
        return self.grad_fn is None

    @property
    def T(self) -> "Tensor":
        return _shape.permute(self, tuple(reversed(range(self.ndim))))

    @property
    def mT(self) -> "Tensor":
        return _shape.transpose(self, -2, -1)

    @property
    def _version(self) -> int:
        return self._vc[0]

    def size(self, dim: int | None = None):
        return self.shape if dim is None else self.shape[dim]

    def dim(self) -> int:
        return self.data.ndim

    def numel(self) -> int:
        return int(self.data.size)

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.data.shape[0]

    # ---- conversion -------------------------------------------------------------------------
    def item(self):
        if self.data.size != 1:
            raise ShapeError(f"item: only one-element tensors can be converted, got shape {self.shape}")
        return self.data.reshape(()).item()

    def numpy(self) -> np.ndarray:
        if self.requires_grad:
            raise GraphError("numpy: tensor requires grad; call .detach().numpy()")
        return asnumpy(self.data)

    def tolist(self):
        return asnumpy(self.data).tolist()

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __bool__(self) -> bool:
        return bool(self.item())

    def __index__(self) -> int:
        if self.data.dtype.kind not in "iu":
            raise TypeError(f"only integer tensors can be used as an index, got {self.dtype}")
        return int(self.item())

    def __array__(self, dtype=None, copy=None):
        a = asnumpy(self.data)
        return a if dtype is None else a.astype(dtype)

    def detach(self) -> "Tensor":
        """A tensor sharing this one's data, outside the graph."""
        t = Tensor(self.data)
        t._vc = self._vc
        return t

    def clone(self) -> "Tensor":
        return _elementwise.clone(self)

    def contiguous(self) -> "Tensor":
        return self

    # ---- new tensors like this one (its dtype and device unless given) ----------------------------
    def new_zeros(self, *size, dtype=None, device=None, requires_grad: bool = False) -> "Tensor":
        from ember.factories import zeros

        return zeros(*size, dtype=dtype or self.dtype, device=device or self.device, requires_grad=requires_grad)

    def new_ones(self, *size, dtype=None, device=None, requires_grad: bool = False) -> "Tensor":
        from ember.factories import ones

        return ones(*size, dtype=dtype or self.dtype, device=device or self.device, requires_grad=requires_grad)

    def new_empty(self, *size, dtype=None, device=None, requires_grad: bool = False) -> "Tensor":
        return self.new_zeros(*size, dtype=dtype, device=device, requires_grad=requires_grad)

    def new_full(self, size, fill_value, dtype=None, device=None, requires_grad: bool = False) -> "Tensor":
        from ember.factories import full

        return full(size, fill_value, dtype=dtype or self.dtype, device=device or self.device,
                    requires_grad=requires_grad)

    def new_tensor(self, data, dtype=None, device=None, requires_grad: bool = False) -> "Tensor":
        from ember.factories import tensor

        return tensor(data, dtype=dtype or self.dtype, device=device or self.device, requires_grad=requires_grad)

    def to(self, target, dtype=None) -> "Tensor":
        """``t.to("cuda")``, ``t.to(ember.float64)`` or ``t.to("cpu", ember.float32)``."""
        out = self
        if isinstance(target, (str, Device)):
            device = Device(target)
            if device != self.device:
                out = _elementwise.to_device(out, device)
        elif target is not None:
            dtype = target
        if dtype is not None and np.dtype(dtype) != out.dtype:
            out = _elementwise.astype(out, dtype)
        return out

    def cpu(self) -> "Tensor":
        return self.to("cpu")

    def cuda(self, index: int = 0) -> "Tensor":
        return self.to(f"cuda:{index}")

    def type_as(self, other: "Tensor") -> "Tensor":
        return self.to(other.dtype)

    def float(self) -> "Tensor":
        return self.to(np.float32)

    def double(self) -> "Tensor":
        return self.to(np.float64)

    def half(self) -> "Tensor":
        return self.to(np.float16)

    def long(self) -> "Tensor":
        return self.to(np.int64)

    def int(self) -> "Tensor":
        return self.to(np.int32)

    def bool(self) -> "Tensor":
        return self.to(np.bool_)

    # ---- autograd -----------------------------------------------------------------------------
    def backward(self, gradient: "Tensor | None" = None, retain_graph: bool = False) -> None:
        """Compute the gradient of this tensor w.r.t. every leaf that requires grad."""
        from ember.autograd import _seed, backward

        if not self.requires_grad:
            raise GraphError("backward: tensor does not require grad and has no grad_fn")
        backward(self, _seed("backward", self, gradient), retain_graph=retain_graph)

    def retain_grad(self) -> None:
        """Keep ``.grad`` for this non-leaf tensor after backward."""
        import weakref

        if self.grad_fn is not None:
            self.grad_fn.retained = weakref.ref(self)

    def register_hook(self, hook):
        """Call ``hook(grad)`` with this tensor's gradient each time backward computes it; a hook
        that returns a tensor (of the gradient's shape and dtype) replaces the gradient from there
        on: what reaches ``.grad`` (a leaf) or flows on to earlier ops (a non-leaf). Hooks run in
        the order registered; ``handle.remove()`` on the returned handle unregisters one.

        Example, watching the gradient reaching a hidden layer: ``h.register_hook(lambda g: print(g.norm()))``.
        """
        from ember.nn.module import RemovableHandle

        if not self.requires_grad:
            raise GraphError("register_hook: the tensor does not require grad, so no gradient will reach it")
        if self.grad_fn is not None:
            hooks = self.grad_fn.__dict__.setdefault("hooks", {})
        else:
            if self._hooks is None:
                self._hooks = {}
            hooks = self._hooks
        handle = RemovableHandle(hooks)
        hooks[handle.id] = hook
        return handle

    def requires_grad_(self, requires_grad: bool = True) -> "Tensor":
        if self.grad_fn is not None and not requires_grad:
            raise GraphError("requires_grad_: cannot turn off requires_grad on a non-leaf tensor; use detach()")
        if requires_grad and self.data.dtype.kind not in "fc":
            raise GraphError(f"requires_grad_: only floating point tensors can require grad, got {self.dtype}")
        self.requires_grad = requires_grad
        return self

    # ---- in-place setters (bump the version so backward can detect the change) --------------
    def _inplace(self, op: str) -> None:
        from ember.autograd import is_grad_enabled

        if self.requires_grad and self.grad_fn is None and is_grad_enabled():
            raise GraphError(
                f"{op}: a leaf tensor that requires grad cannot be changed in place while grad mode is on; "
                "wrap the change in `with ember.no_grad():`"
            )
        if self.requires_grad and self.grad_fn is not None:
            raise GraphError(f"{op}: in-place change of a tensor that is part of the graph is not supported")
        if isinstance(self.data, np.generic):  # NumPy returns scalars for 0-d results; make it writable
            self.data = np.array(self.data)
        self._vc[0] += 1

    def _operand(self, other):
        return other.data if isinstance(other, Tensor) else other

    def zero_(self) -> "Tensor":
        self._inplace("zero_")
        self.data[...] = 0
        return self

    def fill_(self, value) -> "Tensor":
        self._inplace("fill_")
        self.data[...] = self._operand(value)
        return self

    def copy_(self, src) -> "Tensor":
        self._inplace("copy_")
        src = self._operand(src)
        if tuple(np.shape(src)) != self.shape:
            src_shape = tuple(np.shape(src))
            try:
                np.broadcast_shapes(src_shape, self.shape)
            except ValueError:
                raise ShapeError(f"copy_: source shape {src_shape} does not broadcast to {self.shape}") from None
        self.data[...] = to_device(src, self.device) if hasattr(src, "shape") else src
        return self

    def add_(self, other, alpha=1) -> "Tensor":
        self._inplace("add_")
        self.data += alpha * self._operand(other) if alpha != 1 else self._operand(other)
        return self

    def sub_(self, other, alpha=1) -> "Tensor":
        return self.add_(other, alpha=-alpha)

    def mul_(self, other) -> "Tensor":
        self._inplace("mul_")
        self.data *= self._operand(other)
        return self

    def div_(self, other) -> "Tensor":
        self._inplace("div_")
        self.data /= self._operand(other)
        return self

    def clamp_(self, min=None, max=None) -> "Tensor":
        self._inplace("clamp_")
        xp_of(self.data).clip(self.data, min, max, out=self.data)
        return self

    def uniform_(self, a: float = 0.0, b: float = 1.0, generator=None) -> "Tensor":
        from ember.nn import init

        return init.uniform_(self, a, b, generator=generator)

    def normal_(self, mean: float = 0.0, std: float = 1.0, generator=None) -> "Tensor":
        from ember.nn import init

        return init.normal_(self, mean, std, generator=generator)

    def __setitem__(self, index, value) -> None:
        self._inplace("__setitem__")
        if isinstance(index, Tensor):
            index = index.data
        elif isinstance(index, tuple):
            index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
        self.data[index] = self._operand(value)

    # ---- printing -------------------------------------------------------------------------------
    def __repr__(self) -> str:
        body = np.array2string(asnumpy(self.data), separator=", ", precision=4, prefix="tensor(")
        extra = []
        if self.data.dtype != np.float32 and self.data.dtype != np.int64 and self.data.dtype != np.bool_:
            extra.append(f"dtype={self.data.dtype}")
        if self.device.type != "cpu":
            extra.append(f"device='{self.device}'")
        if self.grad_fn is not None:
            extra.append(f"grad_fn={self.grad_fn!r}")
        elif self.requires_grad:
            extra.append("requires_grad=True")
        return "tensor(" + body + "".join(", " + e for e in extra) + ")"

    __hash__ = object.__hash__


def _number(x) -> bool:
    return isinstance(x, numbers.Number) and not isinstance(x, bool)


import ember.autograd as _autograd  # noqa: E402

_autograd.Tensor = Tensor  # Function.apply builds outputs without an import per call

# Operators and methods are attached from the op modules (at the bottom to avoid an
# import cycle: the ops import Tensor).
from ember.ops import activation as _activation  # noqa: E402
from ember.ops import compare as _compare  # noqa: E402
from ember.ops import elementwise as _elementwise  # noqa: E402
from ember.ops import linalg as _linalg  # noqa: E402
from ember.ops import reduce as _reduce  # noqa: E402
from ember.ops import select as _select  # noqa: E402
from ember.ops import shape as _shape  # noqa: E402


def _attach() -> None:
    E, S, R, L, C, A, P = _elementwise, _shape, _reduce, _linalg, _compare, _activation, _select
    methods = {
        "__add__": E.add, "__radd__": lambda a, b: E.add(b, a), "__sub__": E.sub,
        "__rsub__": lambda a, b: E.sub(b, a), "__mul__": E.mul, "__rmul__": lambda a, b: E.mul(b, a),
        "__truediv__": E.div, "__rtruediv__": lambda a, b: E.div(b, a), "__pow__": E.pow,
        "__rpow__": lambda a, b: E.pow(E.as_tensor_like(b, a), a), "__neg__": E.neg, "__abs__": E.abs,
        "__matmul__": L.matmul, "__rmatmul__": lambda a, b: L.matmul(E.as_tensor_like(b, a), a),
        "__eq__": C.eq, "__ne__": C.ne, "__lt__": C.lt, "__le__": C.le, "__gt__": C.gt, "__ge__": C.ge,
        "__invert__": C.logical_not, "__and__": C.logical_and, "__or__": C.logical_or,
        "__getitem__": S.getitem,
        "add": E.add, "sub": E.sub, "mul": E.mul, "div": E.div, "pow": E.pow, "neg": E.neg, "abs": E.abs,
        "exp": E.exp, "log": E.log, "log1p": E.log1p, "sqrt": E.sqrt, "rsqrt": E.rsqrt, "square": E.square,
        "sin": E.sin, "cos": E.cos, "tanh": A.tanh, "sigmoid": A.sigmoid, "relu": A.relu, "sign": E.sign,
        "clamp": E.clamp, "clip": E.clamp, "maximum": E.maximum, "minimum": E.minimum,
        "eq": C.eq, "ne": C.ne, "lt": C.lt, "le": C.le, "gt": C.gt, "ge": C.ge, "isfinite": C.isfinite,
        "isnan": C.isnan, "floor": C.floor, "ceil": C.ceil, "round": C.round, "astype": E.astype,
        "matmul": L.matmul, "mm": L.mm, "dot": L.dot,
        "sum": R.sum, "mean": R.mean, "var": R.var, "std": R.std, "max": R.max, "min": R.min,
        "amax": R.amax, "amin": R.amin, "logsumexp": R.logsumexp, "softmax": R.softmax,
        "log_softmax": R.log_softmax, "argmax": R.argmax, "argmin": R.argmin, "prod": R.prod,
        "norm": R.norm, "all": R.all, "any": R.any,
        "reshape": S.reshape, "view": S.reshape, "flatten": S.flatten, "unflatten": S.unflatten,
        "squeeze": S.squeeze, "unsqueeze": S.unsqueeze, "transpose": S.transpose, "permute": S.permute,
        "expand": S.expand, "broadcast_to": S.broadcast_to, "split": S.split, "chunk": S.chunk,
        "unbind": S.unbind, "flip": S.flip, "repeat": S.repeat, "index_select": S.index_select,
        "movedim": S.movedim,
        "gather": P.gather, "masked_fill": P.masked_fill, "sort": P.sort, "argsort": P.argsort, "topk": P.topk,
        "cumsum": P.cumsum, "roll": P.roll, "narrow": P.narrow, "t": P.t, "bmm": L.bmm,
        "logical_and": C.logical_and, "logical_or": C.logical_or, "logical_not": C.logical_not,
    }
    for name, fn in methods.items():
        setattr(Tensor, name, fn)
    Tensor.expand_as = lambda self, other: S.broadcast_to(self, other.shape)
    Tensor.view_as = lambda self, other: S.reshape(self, other.shape)
    Tensor.reshape_as = Tensor.view_as


_attach()
