"""The small exception hierarchy every ember error comes from.

Each class also subclasses the built-in exception a Python user would expect
(``ValueError`` for bad shapes or file contents, ``TypeError`` for bad dtypes,
``RuntimeError`` for misuse of the autograd graph), so ``except ValueError``
keeps working.
"""


class EmberError(Exception):
    """Base class of all ember errors."""


class ShapeError(EmberError, ValueError):
    """Operand shapes do not fit the op (names the op and both shapes)."""


class DTypeError(EmberError, TypeError):
    """An operand has a dtype the op cannot use."""


class DeviceError(EmberError, ValueError):
    """Operands live on different devices, or a device is not available."""


class FormatError(EmberError, ValueError):
    """A file (checkpoint, dataset) is malformed; the message names the file."""


class GraphError(EmberError, RuntimeError):
    """The autograd graph was used wrongly (freed graph, in-place change, ...)."""
