"""The ``ember`` command line: ``ember train``, ``ember eval``, ``ember inspect``, ``ember summary``,
``ember lr-find``.

``main(argv)`` takes the arguments as a list so tests call it directly; it returns the
process exit status. Subcommands live in their own modules, each with
``add_arguments(parser)`` and ``run(args) -> int``; ``inspect``, ``summary`` and ``lr-find``
are imported only when used.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from ember.memory import keep_freed_memory

__all__ = ["main", "build_parser"]

# name -> (module, one-line help)
SUBCOMMANDS = {
    "train": ("ember.cli.train", "train a model from the zoo on a dataset"),
    "eval": ("ember.cli.evaluate", "evaluate a saved checkpoint: accuracy, per-class accuracy, confusion matrix"),
    "inspect": ("ember.cli.inspect", "diagnostics of a model or checkpoint (gradients, activations, filters)"),
    "summary": ("ember.cli.summary", "layer-by-layer summary of a model: shapes, parameters, receptive field"),
    "lr-find": ("ember.cli.lr_find", "learning-rate range test: sweep the lr, print and plot the loss, suggest an lr"),
}


def _load(module_name: str):
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name == module_name:  # the subcommand module itself is absent, not one of its imports
            return None
        raise


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ember", description="ember: train, evaluate and inspect neural networks.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    from ember import __version__

    parser.add_argument("--version", action="version", version=f"ember {__version__}", help="print the version")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        module = _load(module_name) if name in ("train", "eval") or _wanted(name) else None
        if module is not None:
            module.add_arguments(p)
        p.set_defaults(_module=module_name)
    return parser


_ARGV: list[str] = []


def _wanted(name: str) -> bool:
    # Lazy: import inspect/summary only when that subcommand is on the command line.
    return name in _ARGV


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 on success)."""
    global _ARGV
    argv = list(sys.argv[1:] if argv is None else argv)
    _ARGV = argv
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    args._argv = argv  # so --config can tell which settings were given as flags
    keep_freed_memory()  # training steps reuse their large temporaries without page faults (ember.memory)
    module = _load(args._module)
    if module is None:
        print(f"ember {args.command}: this subcommand is not available ({args._module} is not installed "
              "in this copy of ember)", file=sys.stderr)
        return 2
    return int(module.run(args) or 0)
