"""``ember summary --model resnet20``: the layer table of a zoo model in the terminal.

Columns: layer, type, output shape, parameters, theoretical receptive field and jump
(effective stride), from one traced forward pass on a zero input of one sample.
"""
from __future__ import annotations

import argparse

__all__ = ["add_arguments", "run", "default_input_shape", "build_model"]


def default_input_shape(name: str) -> tuple:
    """The input each zoo family is usually built for (C, H, W)."""
    key = name.lower()
    if key.startswith("perceptron"):
        return (2,)
    if key.startswith(("lenet", "mlp")):
        return (1, 28, 28)
    if key.startswith(("resnet20", "resnet32", "resnet56")):
        return (3, 32, 32)
    return (3, 224, 224)


def build_model(name: str, shape: tuple, **kw):
    """``get_model(name)`` told the input's channels and size when the builder takes them."""
    from ember.models import get_model

    if len(shape) == 3:
        for extra in ({"in_channels": shape[0], "input_size": shape[1]}, {"in_channels": shape[0]}, {}):
            try:
                return get_model(name, **extra, **kw)
            except TypeError:
                continue
    return get_model(name, **kw)


def _shape(text: str) -> tuple:
    try:
        return tuple(int(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--input-shape: expected numbers like 3,32,32, got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="zoo model name (see ember.models.list_models())")
    parser.add_argument("--input-shape", type=_shape, default=None,
                        help="per-sample input shape C,H,W (default: the model family's usual input)")
    parser.add_argument("--num-classes", type=int, default=None, help="number of output classes")


def run(args) -> int:
    from ember.diagnostics.summary import summarize

    shape = args.input_shape or default_input_shape(args.model)
    kw = {} if args.num_classes is None else {"num_classes": args.num_classes}
    try:
        model = build_model(args.model, shape, **kw)
    except ValueError as e:
        print(f"ember summary: {e}")
        return 2
    print(f"{args.model}")
    print(summarize(model, shape))
    return 0
