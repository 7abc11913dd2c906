"""A layer table for a model: layer, type, output shape, parameters, receptive field.

``summarize(model, (3, 32, 32))`` traces one forward pass (eval mode, batch of 1) and
lists every leaf module in the order it ran, with the theoretical receptive field
and jump (effective stride) of its output from :mod:`ember.diagnostics.receptive_field`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ember.diagnostics.receptive_field import Field, fields_from_trace
from ember.diagnostics.trace import trace
from ember.tensor import Tensor

__all__ = ["SummaryRow", "ModelSummary", "summarize"]


@dataclass
class SummaryRow:
    name: str
    type: str
    out_shape: tuple | None
    params: int  # parameters owned by this module (0 on its second and later calls)
    field: Field | None

    @property
    def rf(self) -> str:
        return "?" if self.field is None else self.field.text()

    @property
    def jump(self) -> str:
        if self.field is None or self.field.global_:
            return "-"
        j = self.field.jump
        return f"{j[0]:g}" if len(set(j)) == 1 else "x".join(f"{v:g}" for v in j)


class ModelSummary(list):
    """Rows of :class:`SummaryRow`; ``str()`` renders the terminal table."""

    def __init__(self, rows, total: int, trainable: int, input_shape: tuple):
        super().__init__(rows)
        self.total, self.trainable, self.input_shape = total, trainable, input_shape

    def table(self) -> list[tuple[str, ...]]:
        """Header + rows as strings (shared by the terminal table and the HTML report)."""
        head = ("layer", "type", "output shape", "params", "RF", "jump")
        rows = [(r.name, r.type, "x".join(map(str, r.out_shape[1:])) if r.out_shape else "-",
                 f"{r.params:,}", r.rf, r.jump) for r in self]
        return [head] + rows

    def __str__(self) -> str:
        t = self.table()
        w = [max(len(r[i]) for r in t) for i in range(len(t[0]))]
        right = {3}  # numbers right-aligned
        line = lambda r: "  ".join(c.rjust(x) if i in right else c.ljust(x)  # noqa: E731
                                   for i, (c, x) in enumerate(zip(r, w))).rstrip()
        out = [line(t[0]), line(tuple("-" * x for x in w))] + [line(r) for r in t[1:]]
        out += [f"input {'x'.join(map(str, self.input_shape))}; parameters: {self.total:,} "
                f"({self.trainable:,} trainable)"]
        return "\n".join(out)


def summarize(model, x) -> ModelSummary:
    """Layer table of ``model`` for input ``x``.

    Args:
        model: an ``ember.nn.Module`` (left in its current mode; the trace runs in eval mode).
        x: an input Tensor (N, C, H, W) or a per-sample shape like (3, 32, 32).
    """
    if isinstance(x, (tuple, list)):
        x = Tensor(np.zeros((1,) + tuple(x), dtype=np.float32))
    calls = trace(model, x)
    fields = fields_from_trace(calls)
    counted: set = set()
    rows = []
    for c, f in zip(calls, fields):
        n = 0
        if id(c.module) not in counted:
            counted.add(id(c.module))
            n = sum(p.numel() for p in c.module.parameters(recurse=False))
        rows.append(SummaryRow(c.name, c.type, c.out_shape, n, f))
    params = list(model.parameters())
    return ModelSummary(rows, sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad),
                        tuple(x.shape[1:]))
