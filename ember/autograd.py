"""Reverse-mode automatic differentiation: the Function base class and the engine.

How a backward pass runs (follow it from ``loss.backward()``):

1. ``Function.apply`` runs an op's ``forward`` on raw arrays and, when grad mode is
   on and some input requires a gradient, links the op into the graph: the output
   tensor points to the Function (``grad_fn``), and the Function points to where
   each input's gradient must go (``next``: the input's own ``grad_fn``, or the
   input tensor itself when it is a leaf, or None).
2. ``backward(root)`` sorts the Functions reachable from the root (iteratively, so
   a chain of 10,000 ops is fine), then visits them in reverse topological order:
   each receives the sum of the gradients flowing into its output, calls its
   ``backward(gy)``, and hands one gradient to each input.
3. Leaves accumulate into ``tensor.grad``. Unless ``retain_graph=True`` every
   visited Function drops its saved arrays, and a later backward through it raises.

Functions point only to earlier Functions and to leaves, never to their outputs, so
an intermediate tensor (and its array) is freed as soon as nothing else refers to it.
"""
from __future__ import annotations

import functools
import sys

import numpy as np

from ember.backend import add_keep_channels_last, xp_of
from ember.errors import DTypeError, GraphError, ShapeError

_grad_enabled = True
Tensor = None  # set by ember.tensor once the class exists (tensor.py imports this module)


def is_grad_enabled() -> bool:
    """True when ops record the graph for backward."""
    return _grad_enabled


class _GradMode:
    """Context manager and decorator that sets grad mode and restores it on exit."""

    mode = True

    def __new__(cls, func=None):
        # ``@no_grad`` (no parentheses) hands the function straight to the class.
        self = super().__new__(cls)
        return self if func is None else self(func)

    def __enter__(self):
        global _grad_enabled
        self._prev = _grad_enabled
        _grad_enabled = self.mode

    def __exit__(self, *exc):
        global _grad_enabled
        _grad_enabled = self._prev
        return False

    def __call__(self, func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            with self.__class__():
                return func(*args, **kwargs)

        return wrapper


class no_grad(_GradMode):
    """Disable graph recording: ``with ember.no_grad(): ...``, ``@ember.no_grad()`` or ``@ember.no_grad``."""

    mode = False


class enable_grad(_GradMode):
    """Re-enable graph recording inside a ``no_grad`` block."""

    mode = True


class set_grad_enabled:
    """Set grad mode to ``mode`` now (``ember.set_grad_enabled(False)``), for a ``with`` block (the
    previous mode comes back on exit) or, as ``@ember.set_grad_enabled(False)``, for a function."""

    def __init__(self, mode: bool):
        global _grad_enabled
        self._prev, self.mode = _grad_enabled, bool(mode)
        _grad_enabled = self.mode

    def __enter__(self):
        return None

    def __exit__(self, *exc):
        global _grad_enabled
        _grad_enabled = self._prev
        return False

    def __call__(self, func):
        global _grad_enabled
        _grad_enabled = self._prev  # decorating changes nothing until the function runs
        mode = self.mode

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            with set_grad_enabled(mode):
                return func(*args, **kwargs)

        return wrapper


class Function:
    """One differentiable primitive.

    Subclasses implement ``forward(self, *arrays, **attrs) -> array`` on raw NumPy or
    CuPy arrays, storing on ``self`` only what backward needs, and
    ``backward(self, gy) -> gradient or tuple of gradients``, one per input (None
    where ``self.needs_input_grad[i]`` is False or no gradient exists). Each gradient
    must have exactly its input's shape and dtype; the engine checks that.
    """

    needs_input_grad: tuple = ()
    # Positions of the inputs whose arrays backward reads (None: all of them). An input changed in
    # place between forward and backward is an error only if backward reads it; an op lists its
    # inputs here only when none of the others is saved and its output is a new array (not a view
    # of an input: a view would see the change without the engine noticing).
    saved_inputs: tuple | None = None

    def forward(self, *arrays, **attrs):
        raise NotImplementedError

    def backward(self, gy):
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs, **attrs):
        """Run the op on tensors and record it in the graph when needed.

        ``inputs`` are Tensors; ``attrs`` are non-differentiable settings passed to
        ``forward`` as keyword arguments. This runs once per op of every training
        step, so it is written for speed: plain loops, no helper calls.
        """
        fn = cls()
        needs = tuple([t.requires_grad for t in inputs]) if _grad_enabled else ()
        if True not in needs:
            return Tensor(fn.forward(*[t.data for t in inputs], **attrs))
        fn.needs_input_grad = needs
        out = Tensor(fn.forward(*[t.data for t in inputs], **attrs))
        # Per input: where its gradient goes, and (shape, dtype, version counter,
        # version now) so the engine can check gradients and detect in-place changes.
        fn.next = tuple([(t.grad_fn if t.grad_fn is not None else t) if t.requires_grad else None for t in inputs])
        fn.in_meta = tuple([(t.data.shape, t.data.dtype, t._vc, t._vc[0]) for t in inputs])
        out.requires_grad = True
        out.grad_fn = fn
        return out

    def __repr__(self) -> str:
        return f"<{type(self).__name__}Backward>"


def _toposort(root: Function) -> tuple[list[Function], dict]:
    """Functions reachable from ``root`` and how many consumers each has."""
    consumers = {root: 0}
    stack = [root]
    while stack:
        fn = stack.pop()
        for parent in getattr(fn, "next", ()):
            if isinstance(parent, Function):
                if parent in consumers:
                    consumers[parent] += 1
                else:
                    consumers[parent] = 1
                    stack.append(parent)
    return list(consumers), consumers


def _freed_error(fn: Function) -> GraphError:
    return GraphError(
        f"backward through {type(fn).__name__} a second time: its saved arrays were freed by the "
        "first backward. Pass retain_graph=True to the first backward() to keep them."
    )


def backward(root, gradient, retain_graph: bool = False, into: dict | None = None) -> None:
    """Accumulate d(root)/d(leaf) into ``leaf.grad`` for every leaf requiring grad. Given ``into``
    instead (``{id(leaf tensor or Function): None}``, from ``grad``), sum in it the gradients that
    reach those leaves and those Functions' outputs, and touch no ``.grad``."""
    fn0 = root.grad_fn
    if fn0 is None:  # backward on a leaf: its gradient is the seed itself
        if into is None:
            _accumulate(root, gradient.copy(), set())
        elif id(root) in into:
            _collect(into, root, gradient)
        return
    if "freed" in fn0.__dict__:
        raise _freed_error(fn0)
    _, consumers = _toposort(fn0)
    needed = None if into is None else _leading_to(fn0, into)  # grad(): the Functions worth visiting
    grads = {fn0: gradient}  # backward functions never write into gy, so the seed is not copied ...
    ready = [fn0]
    handed: set[int] = {id(gradient)}  # ids of arrays already stored as a leaf's .grad (... nor handed out)
    while ready:
        fn = ready.pop()
        gy = grads.pop(fn)
        d = fn.__dict__
        if "freed" in d:
            raise _freed_error(fn)
        hooks = d.get("hooks")
        if hooks:  # Tensor.register_hook on this Function's output: may replace its gradient
            gy = _run_hooks(hooks, gy, fn)
        if into is not None and id(fn) in into:  # grad() asked for this Function's output
            _collect(into, fn, gy)
        retained = d.get("retained")
        if retained is not None and retained() is not None and into is None:
            kept = retained()  # a non-leaf that asked for its .grad (accumulates like a leaf's)
            kept.grad = Tensor(gy.copy()) if kept.grad is None else Tensor(kept.grad.data + gy)
        if needed is None:
            gxs = fn.backward(gy)
        else:  # grad(): ask only for the inputs that lead to a requested tensor (the rest: None)
            mask = tuple([n and (p in needed if isinstance(p, Function) else p is not None and id(p) in into)
                          for n, p in zip(fn.needs_input_grad, fn.next)])
            gxs = (None,) * len(fn.next)
            if True in mask:
                saved, fn.needs_input_grad = fn.needs_input_grad, mask
                try:
                    gxs = fn.backward(gy)
                finally:
                    fn.needs_input_grad = saved
                gxs = tuple([g if m else None for g, m in zip(gxs if type(gxs) is tuple else (gxs,), mask)])
        if type(gxs) is not tuple:
            gxs = (gxs,)
        if len(gxs) != len(fn.next):
            raise GraphError(
                f"{type(fn).__name__}.backward returned {len(gxs)} gradients for {len(fn.next)} inputs"
            )
        for parent, gx, meta in zip(fn.next, gxs, fn.in_meta):
            shape, dtype, vc, version = meta
            if vc[0] != version and _reads_input(fn, meta):
                raise GraphError(
                    f"{type(fn).__name__}: an input saved for backward was modified in place after "
                    f"the op ran (version {version} -> {vc[0]}); clone() it before changing it"
                )
            if parent is None:
                continue
            if gx is None:
                if isinstance(parent, Function):
                    _release(parent, consumers, grads, ready)
                continue
            if gx.shape != shape or gx.dtype != dtype:
                _bad_gradient(fn, [g is gx for g in gxs].index(True), gx, shape, dtype)
            if isinstance(parent, Function):
                prev = grads.get(parent)
                grads[parent] = gx if prev is None else add_keep_channels_last(prev, gx)
                _release(parent, consumers, grads, ready)
            elif into is None:  # a leaf tensor (or a subclass such as nn.Parameter)
                _accumulate(parent, gx, handed)
            elif id(parent) in into:
                _collect(into, parent, gx)
        if not retain_graph:
            d.clear()
            fn.freed = True


def _reads_input(fn: Function, meta: tuple) -> bool:
    """Whether ``fn``'s backward reads the input that ``meta`` (an entry of ``fn.in_meta``) describes."""
    saved = fn.saved_inputs
    return saved is None or [m is meta for m in fn.in_meta].index(True) in saved


def _leading_to(root: Function, into: dict) -> set:
    """The Functions reachable from ``root`` from which a tensor in ``into`` (by id: a leaf, or a
    Function standing for its output) can be reached: only they need a gradient. Post-order,
    iteratively (graphs can be deep): a Function is decided after all its inputs."""
    needed: set = set()
    expanded = set()
    stack = [(root, False)]
    while stack:
        fn, inputs_done = stack.pop()
        parents = getattr(fn, "next", ())
        if inputs_done:
            if id(fn) in into or any(p in needed if isinstance(p, Function) else p is not None and id(p) in into
                                     for p in parents):
                needed.add(fn)
            continue
        if fn in expanded:  # (reached again through another path: already decided, or on its way)
            continue
        expanded.add(fn)
        stack.append((fn, True))  # decided once everything pushed after it (its inputs) is
        stack.extend((p, False) for p in parents if isinstance(p, Function) and p not in expanded)
    return needed


def _collect(into: dict, where, g) -> None:
    """Sum gradient g for ``grad()`` under where's id (a leaf's hooks run first, as in backward)."""
    hooks = getattr(where, "_hooks", None)
    if hooks:
        g = _run_hooks(hooks, g, "a leaf tensor")
    prev = into[id(where)]
    into[id(where)] = g if prev is None else prev + g


def grad(outputs, inputs, grad_outputs=None, retain_graph: bool = False, create_graph: bool = False,
         allow_unused: bool = False) -> tuple:
    """The gradients of ``outputs`` with respect to ``inputs`` (each a tensor or a sequence), as a
    tuple with one tensor per input, without touching any ``.grad`` (torch.autograd.grad):
    ``grad_outputs`` seeds each output (may be omitted for scalar outputs); several outputs add
    up. An input that no output depends on raises, unless ``allow_unused`` (then its entry is
    None). First derivatives only: backward functions work on raw arrays, so ``create_graph``
    (a differentiable gradient) is refused. Only the ops between the outputs and the inputs run
    their backward, and each is asked only for the gradients that lead to an input (an op's
    ``needs_input_grad`` says which): the gradient of a class score with respect to a middle
    layer computes nothing for the layers below it, or for any weight.

    Example, the gradient of a class score with respect to the input image (a saliency map)::

        x.requires_grad_();  (g,) = ember.autograd.grad(model(x)[0, label], x)
    """
    if create_graph:
        raise GraphError("grad: create_graph=True (a differentiable gradient, for higher derivatives) is not "
                         "supported: ember's backward functions compute on raw arrays")
    inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    if grad_outputs is None or isinstance(grad_outputs, Tensor):
        grad_outputs = [grad_outputs] * len(outputs)
    if len(grad_outputs) != len(outputs):
        raise GraphError(f"grad: {len(grad_outputs)} grad_outputs for {len(outputs)} outputs")
    for i, t in enumerate(inputs):
        if not isinstance(t, Tensor) or not t.requires_grad:
            raise GraphError(f"grad: input {i} does not require grad, so it has no gradient")
    for i, o in enumerate(outputs):
        if not o.requires_grad:
            raise GraphError(f"grad: output {i} does not require grad (it does not depend on any input)")
    into = dict.fromkeys(id(t.grad_fn) if t.grad_fn is not None else id(t) for t in inputs)
    if len(outputs) == 1:
        seed = _seed("grad", outputs[0], grad_outputs[0])
        backward(outputs[0], seed, retain_graph=retain_graph, into=into)
    else:  # one backward through the sum of sum(output * seed): each output's gradient is its seed
        with enable_grad():
            total = None
            for o, g in zip(outputs, grad_outputs):
                term = (o * Tensor(_seed("grad", o, g))).sum()
                total = term if total is None else total + term
        backward(total, _seed("grad", total, None), retain_graph=retain_graph, into=into)
    out, seen = [], set()
    for i, t in enumerate(inputs):
        g = into[id(t.grad_fn) if t.grad_fn is not None else id(t)]
        if g is None and not allow_unused:
            raise GraphError(f"grad: input {i} was not used to compute the outputs (pass allow_unused=True "
                             "to get None for it)")
        if g is not None and (id(g) in seen or not _owns_memory(g) or not getattr(g.flags, "writeable", True)):
            g = g.copy(order="K")  # one array reaching two inputs (through an add), or a view (a sum's broadcast)
        seen.add(id(g))
        out.append(None if g is None else Tensor(g))
    return tuple(out)


def _seed(op: str, out, gradient):
    """The array that starts backward from tensor ``out``: ``gradient`` (a tensor or array-like of
    out's shape, cast to its dtype), or ones for a scalar output."""
    xp = xp_of(out.data)
    if gradient is None:
        if out.data.size != 1:
            raise GraphError(
                f"{op}: gradient can be implicit only for a scalar output, but the output has shape "
                f"{out.shape}; pass gradient= of that shape"
            )
        return xp.ones_like(out.data)
    g = gradient.data if isinstance(gradient, Tensor) else xp.asarray(gradient)
    if tuple(g.shape) != out.shape:
        raise ShapeError(f"{op}: gradient has shape {tuple(g.shape)} but the output has shape {out.shape}")
    return g.astype(out.data.dtype, copy=False)


def _bad_gradient(fn: Function, i: int, gx, shape, dtype) -> None:
    """Raise the error for a backward that returned a wrongly shaped or typed gradient."""
    if gx.shape != shape:
        raise ShapeError(
            f"{type(fn).__name__}.backward: gradient for input {i} has shape {tuple(gx.shape)} "
            f"but the input has shape {tuple(shape)}"
        )
    raise DTypeError(
        f"{type(fn).__name__}.backward: gradient for input {i} has dtype {gx.dtype} but the input has dtype {dtype}"
    )


def _release(parent: Function, consumers: dict, grads: dict, ready: list) -> None:
    """One consumer of ``parent`` is done; schedule it when all are."""
    consumers[parent] -= 1
    if consumers[parent] == 0:
        if parent in grads:
            ready.append(parent)
        # A Function that received no gradient at all needs no visit; its inputs
        # may still be reachable through other paths, which are counted separately.
        else:
            _skip(parent, consumers, grads, ready)


def _skip(fn: Function, consumers: dict, grads: dict, ready: list) -> None:
    """Propagate 'no gradient' through a Function iteratively."""
    stack = [fn]
    while stack:
        f = stack.pop()
        for parent in getattr(f, "next", ()):
            if isinstance(parent, Function):
                consumers[parent] -= 1
                if consumers[parent] == 0:
                    if parent in grads:
                        ready.append(parent)
                    else:
                        stack.append(parent)


def _owns_memory(a) -> bool:
    """Whether nothing but ``a`` can reach its memory: it owns it, or it is a view of an array
    that only this view refers to (a convolution's channels-last gradient: a transposed view
    of an array the op made and dropped). CPython's reference count tells."""
    if getattr(a, "base", None) is None:
        return True
    # References to the base: a's own, plus getrefcount's argument; any more means someone else holds it.
    return hasattr(sys, "getrefcount") and sys.getrefcount(a.base) <= 2


def _run_hooks(hooks: dict, g, where):
    """Call each gradient hook (``Tensor.register_hook``) on g in turn; one that returns a tensor
    replaces g for the hooks after it and for the rest of backward."""
    for hook in list(hooks.values()):
        out = hook(Tensor(g))
        if out is None:
            continue
        new = out.data if isinstance(out, Tensor) else out
        if getattr(new, "shape", None) != g.shape or new.dtype != g.dtype:
            raise ShapeError(
                f"register_hook: a hook on {where!r} returned a gradient of shape "
                f"{tuple(getattr(new, 'shape', ()))} and dtype {getattr(new, 'dtype', type(new).__name__)}; "
                f"the gradient has shape {tuple(g.shape)} and dtype {g.dtype}"
            )
        g = new
    return g


def _accumulate(leaf, gx, handed: set) -> None:
    """Add ``gx`` into ``leaf.grad`` without ever aliasing another tensor's gradient."""
    hooks = getattr(leaf, "_hooks", None)
    if hooks:
        gx = _run_hooks(hooks, gx, "a leaf tensor")
    if leaf.grad is None:
        # Arrays handed to two leaves (Add passes gy to both) or views of other
        # arrays are copied, so an in-place change to one .grad never leaks.
        # NumPy scalars (what NumPy returns for 0-d results) become 0-d arrays so
        # that in-place setters such as grad.zero_() work on them.
        if isinstance(gx, np.generic):
            gx = np.array(gx)
        elif id(gx) in handed or not _owns_memory(gx):
            gx = gx.copy(order="K")  # keeps a channels-last gradient channels-last (a fast copy)
        handed.add(id(gx))
        leaf.grad = Tensor(gx)
    else:
        # Out of place: gx may also be pending for another Function.
        total = leaf.grad.data + gx
        leaf.grad.data = np.array(total) if isinstance(total, np.generic) else total
