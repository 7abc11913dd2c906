"""Parametrizations: a module's tensor recomputed from others on every access (``torch.nn.utils.parametrize``).

``register_parametrization(module, "weight", p)`` moves the parameter (or buffer)
``weight`` into ``module.parametrizations.weight`` (a :class:`ParametrizationList`) as
``original`` (or ``original0``, ``original1``, ... when ``p.right_inverse`` splits it into
several tensors), and makes ``module.weight`` return ``p(original)`` each time it is read.

How, without touching Module's attribute machinery: as in PyTorch, the module's class is
swapped for a one-off subclass (``ParametrizedLinear``) that holds a ``weight`` property.
A property is a data descriptor, so it wins over the instance ``__dict__`` that Module
mirrors registered tensors into; ``module.weight = t`` (a plain Tensor) reaches the
property's setter, which stores ``right_inverse(t)`` in the originals.

State-dict keys are PyTorch's: ``parametrizations.weight.original0``, ``...0._u`` and so on.
Serialization is through ``state_dict()`` only; ``copy.deepcopy`` works.
"""
from __future__ import annotations

import copy
from contextlib import contextmanager
from typing import Iterator, Sequence

from ember.autograd import no_grad
from ember.nn.container import ModuleDict, ModuleList
from ember.nn.module import Module
from ember.nn.parameter import Parameter
from ember.tensor import Tensor

__all__ = ["ParametrizationList", "register_parametrization", "remove_parametrizations", "is_parametrized",
           "type_before_parametrizations", "cached"]

_cache_depth = 0
_cache: dict = {}


@contextmanager
def cached() -> Iterator[None]:
    """Inside this block each parametrized tensor is computed once, at its first read, and reused.

    Useful when a weight is read many times per forward (a recurrent cell): one
    parametrization per block instead of one per read.
    """
    global _cache_depth
    _cache_depth += 1
    try:
        yield
    finally:
        _cache_depth -= 1
        if not _cache_depth:
            _cache.clear()


def _register_tensor(module: Module, name: str, t: Tensor) -> None:
    if isinstance(t, Parameter):
        module.register_parameter(name, t)
    else:
        module.register_buffer(name, t)


def _set_data(dest: Tensor, src: Tensor) -> None:
    """Make ``dest`` hold ``src``'s values, keeping ``dest``'s identity (optimizers hold it).

    Copied into dest's array when the shapes agree (no aliasing of the caller's array);
    otherwise (an unsafe parametrization) dest takes src's array.
    """
    if dest.shape == src.shape:
        dest.data[...] = src.data
    else:
        dest.data = src.data
    dest._vc[0] += 1


def _check_same(what: str, x: Tensor, ref: Tensor, ref_name: str) -> None:
    if not isinstance(x, Tensor):
        raise ValueError(f"register_parametrization: {what} must return a Tensor, got {type(x).__name__}")
    if x.dtype != ref.dtype or x.shape != ref.shape:
        raise ValueError(f"register_parametrization: {what} changed {ref_name} from {ref.shape} {ref.dtype} to "
                         f"{x.shape} {x.dtype}; pass unsafe=True to allow changes of shape or dtype")


class ParametrizationList(ModuleList):
    """The parametrizations of one tensor, in registration order, and the tensor(s) they start from.

    ``forward()`` returns ``self[-1](...self[1](self[0](original)))``; with several originals
    the first parametrization takes them all (``self[0](original0, original1, ...)``).
    Built by :func:`register_parametrization`, not by hand.

    Args:
        modules: the parametrizations (at least one).
        original: the parameter or buffer being parametrized.
        unsafe: allow the parametrization to change the tensor's shape or dtype.
    """

    def __init__(self, modules: Sequence[Module], original: Tensor, unsafe: bool = False):
        if len(modules) == 0:
            raise ValueError("ParametrizationList: needs one or more parametrizations")
        super().__init__(modules)
        self.unsafe = unsafe
        with no_grad():
            new = original
            for m in reversed(list(self)):
                if hasattr(m, "right_inverse"):
                    try:
                        new = m.right_inverse(new)
                    except NotImplementedError:
                        pass
        if isinstance(new, Tensor):
            if new.dtype != original.dtype:
                raise ValueError(f"register_parametrization: right_inverse returned one tensor of dtype {new.dtype} "
                                 f"but the original has dtype {original.dtype}; one output may not change the dtype")
            self.is_tensor, self.ntensors = True, 1
            if new is not original:
                _set_data(original, new)
            _register_tensor(self, "original", original)
        elif isinstance(new, (list, tuple)):
            self.is_tensor, self.ntensors = False, len(new)
            for i, t in enumerate(new):
                if not isinstance(t, Tensor):
                    raise ValueError(f"register_parametrization: right_inverse must return Tensors, got element {i} "
                                     f"of type {type(t).__name__}")
                if isinstance(original, Parameter):
                    t = Parameter(t, original.requires_grad)
                else:
                    t = Tensor(t.data)
                _register_tensor(self, f"original{i}", t)
        else:
            raise ValueError(f"register_parametrization: right_inverse must return a Tensor or a sequence of "
                             f"Tensors, got {type(new).__name__}")
        if not unsafe:
            _check_same("the parametrization", self(), original, "the tensor")

    def originals(self) -> tuple:
        if self.is_tensor:
            return (self.original,)
        return tuple(getattr(self, f"original{i}") for i in range(self.ntensors))

    def right_inverse(self, value: Tensor) -> None:
        """Store ``right_inverse`` of ``value`` (through every parametrization, last first) in the originals."""
        with no_grad():
            for m in reversed(list(self)):
                if not hasattr(m, "right_inverse"):
                    raise RuntimeError(f"parametrization {type(m).__name__} does not implement right_inverse, so the "
                                       "parametrized tensor cannot be assigned")
                value = m.right_inverse(value)
            values = (value,) if self.is_tensor else value
            if self.is_tensor and not isinstance(value, Tensor):
                raise ValueError(f"right_inverse should return a Tensor, got {type(value).__name__}")
            if not self.is_tensor and (not isinstance(value, (list, tuple)) or len(value) != self.ntensors):
                raise ValueError(f"right_inverse must return a sequence of {self.ntensors} tensors, got {value!r}")
            for i, (dest, v) in enumerate(zip(self.originals(), values)):
                if v.dtype != dest.dtype:
                    raise ValueError(f"right_inverse returned dtype {v.dtype} for original tensor {i}, "
                                     f"which has dtype {dest.dtype}")
                _set_data(dest, v)

    def forward(self) -> Tensor:
        mods = list(self)
        x = mods[0](*self.originals())
        for m in mods[1:]:
            x = m(x)
        return x


def _deepcopy(self, memo):
    # The swapped-in class forbids pickling (below), which deepcopy would use by default.
    if id(self) in memo:
        return memo[id(self)]
    replica = self.__class__.__new__(self.__class__)
    memo[id(self)] = replica
    replica.__dict__.update(copy.deepcopy(self.__dict__, memo))
    return replica


def _no_pickle(self):
    raise RuntimeError(f"{type(self).__name__}: a parametrized module can only be saved through state_dict() "
                       "(load it into a module built and parametrized the same way)")


def _inject_new_class(module: Module) -> None:
    cls = type(module)
    attrs = {"__getstate__": _no_pickle, "_class_before_parametrizations": cls}
    if not hasattr(cls, "__deepcopy__"):
        attrs["__deepcopy__"] = _deepcopy
    module.__class__ = type(f"Parametrized{cls.__name__}", (cls,), attrs)


def _inject_property(module: Module, tensor_name: str) -> None:
    def get(self) -> Tensor:
        plist = self.parametrizations[tensor_name]
        if not _cache_depth:
            return plist()
        key = (id(self), tensor_name)
        if key not in _cache:
            _cache[key] = plist()
        return _cache[key]

    def set_(self, value: Tensor) -> None:
        self.parametrizations[tensor_name].right_inverse(value)

    setattr(type(module), tensor_name, property(get, set_, doc=f"{tensor_name}, computed by its parametrizations"))


def register_parametrization(module: Module, tensor_name: str, parametrization: Module, *,
                             unsafe: bool = False) -> Module:
    """Make ``module.<tensor_name>`` read as ``parametrization(original)``, as ``torch.nn.utils.parametrize``.

    The first registration on a tensor moves the parameter/buffer into
    ``module.parametrizations[tensor_name]`` (``original``, or ``original0, original1, ...``
    when ``parametrization.right_inverse`` returns a sequence; ``right_inverse`` also sets
    their initial values). A later one on the same tensor is applied after the earlier
    ones. Unless ``unsafe``, the parametrized tensor must keep the shape and dtype.

    Returns:
        ``module`` itself.
    """
    parametrization.train(module.training)
    if is_parametrized(module, tensor_name):
        if not unsafe:
            y = getattr(module, tensor_name)
            x = parametrization(y)
            _check_same("the parametrization", x, y, f"module.{tensor_name}")
            if hasattr(parametrization, "right_inverse"):
                try:
                    z = parametrization.right_inverse(x)
                except NotImplementedError:
                    pass
                else:
                    _check_same("right_inverse", z, y, f"module.{tensor_name}")
        plist = module.parametrizations[tensor_name]
        plist.append(parametrization)
        plist.unsafe |= unsafe
        return module
    if not isinstance(tensor_name, str) or (tensor_name not in module._parameters
                                            and tensor_name not in module._buffers):
        raise ValueError(f"register_parametrization: {type(module).__name__} has no parameter, buffer or "
                         f"parametrized tensor named {tensor_name!r}")
    original = getattr(module, tensor_name)
    if original is None:
        raise ValueError(f"register_parametrization: {type(module).__name__}.{tensor_name} is None")
    plist = ParametrizationList([parametrization], original, unsafe=unsafe)
    delattr(module, tensor_name)
    if not is_parametrized(module):
        _inject_new_class(module)
        module.parametrizations = ModuleDict()
    _inject_property(module, tensor_name)
    module.parametrizations[tensor_name] = plist
    return module


def is_parametrized(module: Module, tensor_name: str | None = None) -> bool:
    """Whether ``module`` has any parametrization (``tensor_name`` None) or one on ``tensor_name``."""
    plists = module.__dict__.get("parametrizations")
    if not isinstance(plists, ModuleDict):
        return False
    return len(plists) > 0 if tensor_name is None else tensor_name in plists


def remove_parametrizations(module: Module, tensor_name: str, leave_parametrized: bool = True) -> Module:
    """Turn ``module.<tensor_name>`` back into a plain parameter/buffer.

    ``leave_parametrized=True`` keeps the current parametrized value; False restores the
    original (only possible when there is a single original tensor). With a single
    original the same Parameter object comes back, so optimizers keep working.
    """
    if not is_parametrized(module, tensor_name):
        raise ValueError(f"remove_parametrizations: {type(module).__name__} has no parametrization on "
                         f"{tensor_name!r}")
    plist = module.parametrizations[tensor_name]
    if plist.is_tensor:
        original = plist.original
        if leave_parametrized:
            with no_grad():
                _set_data(original, getattr(module, tensor_name))
    elif leave_parametrized:
        t = getattr(module, tensor_name)
        original = Parameter(t.data, t.requires_grad) if t.requires_grad else Tensor(t.data)
    else:
        raise ValueError("remove_parametrizations: leave_parametrized=False is impossible for a tensor "
                         f"parametrized by {plist.ntensors} original tensors")
    delattr(type(module), tensor_name)
    del module.parametrizations[tensor_name]
    _register_tensor(module, tensor_name, original)
    if not is_parametrized(module):
        delattr(module, "parametrizations")
        module.__class__ = type(module)._class_before_parametrizations
    return module


def type_before_parametrizations(module: Module) -> type:
    """The module's class as it was before any parametrization was registered."""
    return type(module)._class_before_parametrizations if is_parametrized(module) else type(module)
