"""Module: the building block every layer and model derives from.

A ``Module`` owns three ordered registries, filled automatically by attribute
assignment (``self.weight = Parameter(...)``, ``self.conv = Conv2d(...)``) or by
``register_parameter`` / ``register_buffer`` / ``add_module``:

* ``_parameters``: learnable tensors (``Parameter``), seen by optimizers;
* ``_buffers``: state that is not learned (BatchNorm's running mean), saved in the
  state dict unless registered with ``persistent=False``;
* ``_modules``: child modules, which give the dotted state-dict keys ("0.weight").

Registered objects are also mirrored into the instance ``__dict__``, so reading
``self.weight`` in ``forward`` is a plain attribute lookup (no ``__getattr__`` call on
the hot path). Every way of changing a registry goes through ``__setattr__``,
``__delattr__`` or a ``register_*`` method, which keep both in step.

Parameter lives in ember/nn/parameter.py and the containers (Sequential, ModuleList,
ModuleDict, ParameterList, ParameterDict) in ember/nn/container.py; both are re-exported here.
"""
from __future__ import annotations

from collections import OrderedDict, namedtuple
from typing import Callable, Iterator

import numpy as np

from ember.autograd import no_grad
from ember.backend import Device, asnumpy, to_device
from ember.errors import EmberError
from ember.nn.parameter import Parameter
from ember.tensor import Tensor

__all__ = ["Module", "Parameter", "StateDictError", "RemovableHandle"]


class StateDictError(EmberError, RuntimeError):
    """``load_state_dict`` found missing, unexpected or mis-shaped keys (all are listed)."""


class RemovableHandle:
    """Returned by ``register_forward_hook``; ``handle.remove()`` unregisters the hook."""

    _next_id = 0

    def __init__(self, hooks: dict):
        self.hooks = hooks
        self.id = RemovableHandle._next_id
        RemovableHandle._next_id += 1

    def remove(self) -> None:
        self.hooks.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


_IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


def _addindent(text: str, spaces: int) -> str:
    lines = text.split("\n")
    return lines[0] if len(lines) == 1 else lines[0] + "\n" + "\n".join(" " * spaces + ln for ln in lines[1:])


class Module:
    """Base class of all layers and models; subclasses define ``forward``.

    Call a module (``y = layer(x)``) rather than ``forward`` so forward hooks run.
    """

    training: bool

    def __init__(self) -> None:
        d = self.__dict__
        d["training"] = True
        d["_parameters"] = OrderedDict()
        d["_buffers"] = OrderedDict()
        d["_non_persistent_buffers"] = set()
        d["_modules"] = OrderedDict()
        d["_forward_hooks"] = OrderedDict()
        d["_forward_pre_hooks"] = OrderedDict()

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args, **kwargs):
        # Hot path: one truthiness test per dict when no hooks are registered.
        if self._forward_pre_hooks or self._forward_hooks:
            return self._call_with_hooks(args, kwargs)
        return self.forward(*args, **kwargs)

    def _call_with_hooks(self, args: tuple, kwargs: dict):
        for hook in list(self._forward_pre_hooks.values()):
            new = hook(self, args)
            if new is not None:
                args = new if isinstance(new, tuple) else (new,)
        out = self.forward(*args, **kwargs)
        for hook in list(self._forward_hooks.values()):
            new = hook(self, args, out)
            if new is not None:
                out = new
        return out

    # ---- registration ---------------------------------------------------------------------------
    def _check_init(self, what: str) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"cannot assign {what} before Module.__init__() call (call super().__init__() first)")

    def _forget(self, name: str) -> None:
        for store in (self._parameters, self._buffers, self._modules):
            store.pop(name, None)
        self._non_persistent_buffers.discard(name)

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Add a learnable tensor (or None, a placeholder like a disabled bias)."""
        self._check_init("parameters")
        self._check_name(name, "parameter")
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(
                f"cannot assign '{type(param).__name__}' as parameter '{name}' (ember.nn.Parameter or None expected)"
            )
        self._forget(name)
        self._parameters[name] = param
        self.__dict__[name] = param

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        """Add non-learnable state; ``persistent=False`` keeps it out of ``state_dict``."""
        self._check_init("buffers")
        self._check_name(name, "buffer")
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"cannot assign '{type(tensor).__name__}' as buffer '{name}' (ember.Tensor or None expected)")
        self._forget(name)
        self._buffers[name] = tensor
        if not persistent:
            self._non_persistent_buffers.add(name)
        self.__dict__[name] = tensor

    def add_module(self, name: str, module: "Module | None") -> None:
        """Add a child module; its parameters appear under ``name.``."""
        self._check_init("child modules")
        self._check_name(name, "module")
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module: {type(module).__name__} is not a Module subclass")
        self._forget(name)
        self._modules[name] = module
        self.__dict__[name] = module

    register_module = add_module

    def _check_name(self, name: str, what: str) -> None:
        if not isinstance(name, str):
            raise TypeError(f"{what} name should be a string, got {type(name).__name__}")
        if name == "" or "." in name:
            raise KeyError(f"{what} name can't be empty or contain '.', got {name!r}")
        if hasattr(type(self), name):
            raise KeyError(f"attribute '{name}' already exists on {type(self).__name__}")

    def __setattr__(self, name: str, value) -> None:
        d = self.__dict__
        if isinstance(value, Parameter):
            self.register_parameter(name, value)
        elif isinstance(value, Module):
            self._check_init("child modules")
            self._forget(name)
            self._modules[name] = value
            d[name] = value
        elif "_parameters" in d and name in self._parameters:
            if value is not None:
                raise TypeError(
                    f"cannot assign '{type(value).__name__}' as parameter '{name}' (ember.nn.Parameter or None expected)"
                )
            self._parameters[name] = None
            d[name] = None
        elif "_buffers" in d and name in self._buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign '{type(value).__name__}' as buffer '{name}' (ember.Tensor or None expected)")
            self._buffers[name] = value
            d[name] = value
        elif "_modules" in d and name in self._modules:
            if value is not None:
                raise TypeError(f"cannot assign '{type(value).__name__}' as child module '{name}' (Module or None expected)")
            self._modules[name] = None
            d[name] = None
        else:
            object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        if "_parameters" in self.__dict__:
            self._forget(name)
        object.__delattr__(self, name)

    def __getattr__(self, name: str):
        # Only reached when normal lookup fails: registered objects live in __dict__.
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    # ---- iteration ------------------------------------------------------------------------------
    def named_modules(self, memo: set | None = None, prefix: str = "", remove_duplicate: bool = True):
        """Yield ``(dotted name, module)`` for this module and all descendants, pre-order."""
        if memo is None:
            memo = set()
        if remove_duplicate:
            if self in memo:
                return
            memo.add(self)
        yield prefix, self
        for name, m in self._modules.items():
            if m is not None:
                yield from m.named_modules(memo, prefix + ("." if prefix else "") + name, remove_duplicate)

    def modules(self) -> Iterator["Module"]:
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        seen = set()
        for name, m in self._modules.items():
            if m is not None and m not in seen:
                seen.add(m)
                yield name, m

    def children(self) -> Iterator["Module"]:
        for _, m in self.named_children():
            yield m

    def _named_members(self, store: str, prefix: str, recurse: bool, remove_duplicate: bool = True):
        mods = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) if recurse else [(prefix, self)]
        seen = set()
        for mod_prefix, m in mods:
            for name, t in getattr(m, store).items():
                if t is None or (remove_duplicate and id(t) in seen):
                    continue
                seen.add(id(t))
                yield mod_prefix + ("." if mod_prefix else "") + name, t

    def named_parameters(self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True):
        """Yield ``(dotted name, Parameter)``; shared parameters appear once."""
        yield from self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True):
        yield from self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def get_submodule(self, target: str) -> "Module":
        m = self
        for part in target.split(".") if target else []:
            if part not in m._modules or m._modules[part] is None:
                raise AttributeError(f"get_submodule: {type(m).__name__} has no submodule '{part}' (in '{target}')")
            m = m._modules[part]
        return m

    # ---- modes and gradients ----------------------------------------------------------------------
    def train(self, mode: bool = True) -> "Module":
        """Set training mode here and in every descendant (Dropout, BatchNorm read it)."""
        if not isinstance(mode, bool):
            raise TypeError(f"train: mode must be a bool, got {type(mode).__name__}")
        for m in self.modules():
            m.__dict__["training"] = mode
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> "Module":
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear every parameter's gradient (drop it, or fill it with zeros)."""
        for p in self.parameters():
            if p.grad is not None:
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.data[...] = 0

    def apply(self, fn: Callable[["Module"], None]) -> "Module":
        """Call ``fn`` on every descendant (children first) and then on this module."""
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    # ---- device and dtype ---------------------------------------------------------------------------
    def _apply_arrays(self, fn: Callable) -> "Module":
        """Replace each parameter's and buffer's array (and gradient) by ``fn(array)``, in place."""
        for t in list(self.parameters()) + list(self.buffers()):
            new = fn(t.data)
            if new is not t.data:
                t.data = new
                t._vc[0] += 1
            if t.grad is not None:
                t.grad.data = fn(t.grad.data)
        return self

    def to(self, *args, **kwargs) -> "Module":
        """``to("cuda")``, ``to(ember.float64)``, ``to("cpu", ember.float32)``, ``to(device=..., dtype=...)``.

        Parameters keep their identity (their arrays are replaced), so an optimizer
        built before the move still updates the moved tensors. A dtype applies only
        to floating point tensors, as in PyTorch.
        """
        device, dtype = kwargs.pop("device", None), kwargs.pop("dtype", None)
        if kwargs:
            raise TypeError(f"to: unexpected keyword arguments {sorted(kwargs)}")
        for a in args:
            if isinstance(a, (str, Device)):
                device = a
            elif isinstance(a, Tensor):
                device, dtype = a.device, a.dtype
            else:
                dtype = a
        device = Device(device) if device is not None else None
        dtype = np.dtype(dtype) if dtype is not None else None
        if dtype is not None and dtype.kind not in "fc":
            raise TypeError(f"to: module dtype must be floating point, got {dtype}")

        def move(a):
            if device is not None:
                a = to_device(a, device)
            if dtype is not None and a.dtype.kind in "fc" and a.dtype != dtype:
                a = a.astype(dtype)
            return a

        return self._apply_arrays(move)

    def cuda(self, device: int | None = None) -> "Module":
        return self.to(f"cuda:{device or 0}")

    def cpu(self) -> "Module":
        return self.to("cpu")

    def float(self) -> "Module":
        return self.to(np.float32)

    def double(self) -> "Module":
        return self.to(np.float64)

    def half(self) -> "Module":
        return self.to(np.float16)

    # ---- hooks -------------------------------------------------------------------------------------
    def register_forward_hook(self, hook: Callable) -> RemovableHandle:
        """``hook(module, args, output)`` runs after ``forward``; a non-None return replaces the output."""
        handle = RemovableHandle(self._forward_hooks)
        self._forward_hooks[handle.id] = hook
        return handle

    def register_forward_pre_hook(self, hook: Callable) -> RemovableHandle:
        """``hook(module, args)`` runs before ``forward``; a non-None return replaces the args."""
        handle = RemovableHandle(self._forward_pre_hooks)
        self._forward_pre_hooks[handle.id] = hook
        return handle

    # ---- state dict -----------------------------------------------------------------------------------
    def state_dict(self, destination: dict | None = None, prefix: str = "", keep_vars: bool = False) -> OrderedDict:
        """Parameters and persistent buffers by dotted name ("layer1.0.conv1.weight"), as in PyTorch.

        Values share memory with the module (detached unless ``keep_vars``).
        """
        out = OrderedDict() if destination is None else destination
        for mod_prefix, m in self.named_modules(prefix=prefix.rstrip("."), remove_duplicate=False):
            dot = mod_prefix + ("." if mod_prefix else "")
            for name, p in m._parameters.items():
                if p is not None:
                    out[dot + name] = p if keep_vars else p.detach()
            for name, b in m._buffers.items():
                if b is not None and name not in m._non_persistent_buffers:
                    out[dot + name] = b if keep_vars else b.detach()
        return out

    def load_state_dict(self, state_dict, strict: bool = True):
        """Copy values (ember Tensors or NumPy/CuPy arrays) into the parameters and buffers.

        Checks everything first: with ``strict`` every missing and unexpected key, and
        always every shape mismatch, is listed in one StateDictError, and nothing is
        changed. Values are cast to each target's dtype and moved to its device.

        Returns:
            ``(missing_keys, unexpected_keys)`` (both empty when strict loading succeeds).
        """
        own = self.state_dict(keep_vars=True)
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        mismatched, bad_type = [], []
        for k, t in own.items():
            if k not in state_dict:
                continue
            v = state_dict[k]
            if not isinstance(v, Tensor) and not hasattr(v, "shape"):
                bad_type.append(f"{k} ({type(v).__name__})")
            elif tuple(v.shape) != t.shape:
                mismatched.append(f"{k}: checkpoint {tuple(v.shape)} vs model {t.shape}")
        problems = []
        if strict and missing:
            problems.append("missing key(s): " + ", ".join(missing))
        if strict and unexpected:
            problems.append("unexpected key(s): " + ", ".join(unexpected))
        if mismatched:
            problems.append("shape mismatch: " + "; ".join(mismatched))
        if bad_type:
            problems.append("values that are not tensors or arrays: " + ", ".join(bad_type))
        if problems:
            raise StateDictError(
                f"load_state_dict: error(s) loading state_dict into {type(self).__name__} (nothing was changed):\n  "
                + "\n  ".join(problems)
            )
        with no_grad():
            for k, t in own.items():
                if k in state_dict:
                    v = state_dict[k]
                    v = v.data if isinstance(v, Tensor) else v
                    t.data[...] = to_device(v, t.device) if t.device.type != "cpu" else asnumpy(v)
                    t._vc[0] += 1
        return _IncompatibleKeys(missing, unexpected)

    # ---- printing -----------------------------------------------------------------------------------
    def extra_repr(self) -> str:
        """One line of settings shown inside the parentheses of ``repr`` (override it)."""
        return ""

    def __repr__(self) -> str:
        extra = self.extra_repr()
        lines = extra.split("\n") if extra else []
        for name, m in self._modules.items():
            lines.append(f"({name}): " + _addindent(repr(m), 2))
        if not self._modules and len(lines) <= 1:
            return f"{type(self).__name__}({extra})"
        return f"{type(self).__name__}(\n  " + "\n  ".join(lines) + "\n)"

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)


# Containers are defined in their own file; exported here so ``ember.nn`` sees them.
from ember.nn.container import *  # noqa: E402,F401,F403
from ember.nn.container import __all__ as _container_all  # noqa: E402

__all__ += _container_all
