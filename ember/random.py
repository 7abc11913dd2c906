"""Seedable randomness: ``ember.Generator`` and ``ember.manual_seed``.

Every random function takes ``generator=``; without one it uses the default
generator, which ``manual_seed`` reseeds. A Generator draws on the CPU with NumPy's
PCG64, and on a GPU with a CuPy generator seeded from the same seed.
"""
from __future__ import annotations

import numpy as np

from ember.backend import Device, xp_of


class Generator:
    """A random stream: ``g = ember.Generator().manual_seed(0)``."""

    def __init__(self, seed: int | None = None):
        self.manual_seed(np.random.SeedSequence().entropy % (2**63) if seed is None else seed)

    def manual_seed(self, seed: int) -> "Generator":
        self._seed = int(seed)
        self.np = np.random.Generator(np.random.PCG64(self._seed))
        self._cupy = None
        return self

    def initial_seed(self) -> int:
        return self._seed

    def for_device(self, device) -> object:
        """The underlying generator for ``device`` (numpy's, or CuPy's on a GPU)."""
        if Device(device).type == "cpu":
            return self.np
        if self._cupy is None:
            import cupy

            self._cupy = cupy.random.Generator(cupy.random.XORWOW(self._seed))  # type: ignore[attr-defined]
        return self._cupy

    def get_state(self) -> dict:
        """The NumPy bit generator's state (a plain dict of ints, safe to serialize)."""
        return {"seed": self._seed, "bit_generator": self.np.bit_generator.state}

    def set_state(self, state: dict) -> None:
        self._seed = int(state["seed"])
        self.np.bit_generator.state = state["bit_generator"]


default_generator = Generator(0)


def manual_seed(seed: int) -> Generator:
    """Reseed the default generator (used whenever no generator is passed)."""
    return default_generator.manual_seed(seed)


def get_generator(generator: Generator | None) -> Generator:
    if generator is None:
        return default_generator
    if not isinstance(generator, Generator):
        raise TypeError(f"generator: expected an ember.Generator, got {type(generator).__name__}")
    return generator


def rng_for(generator: Generator | None, like=None):
    """The NumPy/CuPy generator to draw arrays for the device of array ``like``."""
    g = get_generator(generator)
    if like is None or xp_of(like) is np:
        return g.np
    return g.for_device(f"cuda:{like.device.id}")
