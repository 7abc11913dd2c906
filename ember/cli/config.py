"""Configuration files for the command line: TOML (always) or YAML (when PyYAML is installed).

A file holds the same settings as the flags, by flag name (``batch-size`` or
``batch_size``), optionally under a ``[train]`` or ``[eval]`` table. Precedence:
built-in defaults < config file < flags given on the command line.
"""
from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["load_config", "apply_config"]


def load_config(path: str | Path) -> dict:
    """Read a ``.toml`` / ``.yaml`` / ``.yml`` file into a dict."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--config: no such file: {path}")
    suffix = path.suffix.lower()
    if suffix == ".toml":
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib  # type: ignore[no-redef]
        with open(path, "rb") as f:
            return tomllib.load(f)
    if suffix in (".yaml", ".yml"):
        try:
            import yaml  # type: ignore
        except ModuleNotFoundError:
            raise ValueError(f"--config: {path} is YAML but PyYAML is not installed; use TOML or "
                             "`pip install pyyaml`") from None
        with open(path) as f:
            data = yaml.safe_load(f) or {}
        if not isinstance(data, dict):
            raise ValueError(f"--config: {path} must hold a mapping of settings")
        return data
    raise ValueError(f"--config: {path} has an unknown extension {suffix!r} (use .toml, .yaml or .yml)")


def apply_config(parser: argparse.ArgumentParser, args: argparse.Namespace, argv: list[str],
                 section: str) -> argparse.Namespace:
    """Fill ``args`` from ``args.config`` for every setting not given as a flag in ``argv``."""
    if not getattr(args, "config", None):
        return args
    data = load_config(args.config)
    if section in data and isinstance(data[section], dict):
        data = data[section]
    dests = {a.dest: a for a in parser._actions if a.dest not in ("help", "config")}
    given = set()
    for a in parser._actions:
        for opt in a.option_strings:
            if any(tok == opt or tok.startswith(opt + "=") for tok in argv):
                given.add(a.dest)
    for key, value in data.items():
        dest = key.replace("-", "_")
        if dest not in dests:
            valid = ", ".join(sorted(d.replace("_", "-") for d in dests))
            raise ValueError(f"--config: unknown setting {key!r} in {args.config}; valid settings: {valid}")
        if dest in given:
            continue
        action = dests[dest]
        if action.type is not None and value is not None and not isinstance(value, (list, dict, bool)):
            value = action.type(value)
        if action.choices is not None and value not in action.choices:
            raise ValueError(f"--config: {key} = {value!r} is not one of {', '.join(map(str, action.choices))}")
        setattr(args, dest, value)
    return args
