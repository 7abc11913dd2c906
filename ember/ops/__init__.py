"""Differentiable primitives, one file per family (see each module's docstring)."""
