"""The ``F`` namespace: every op as a plain function, as in ``torch.nn.functional``.

Nothing is defined here; each name is imported from the ember.ops module that
implements it, so "go to definition" lands on the op and its backward.
"""
from ember.ops.activation import relu, sigmoid, tanh  # noqa: F401
from ember.ops.linalg import bilinear, linear  # noqa: F401
from ember.ops.reduce import log_softmax, softmax  # noqa: F401
from ember.ops.shape import pad  # noqa: F401
from ember.ops.select import one_hot  # noqa: F401
from ember.ops.activation import *  # noqa: F401,F403
from ember.ops.loss import *  # noqa: F401,F403
from ember.ops.conv import *  # noqa: F401,F403
from ember.ops.pool import *  # noqa: F401,F403
from ember.ops.norm import *  # noqa: F401,F403
from ember.ops.dropout import *  # noqa: F401,F403
from ember.ops.upsample import *  # noqa: F401,F403
from ember.ops.distance import *  # noqa: F401,F403
from ember.ops.margin import *  # noqa: F401,F403
from ember.ops.activation_more import *  # noqa: F401,F403
from ember.ops.embedding import *  # noqa: F401,F403
from ember.ops.pool_fractional import *  # noqa: F401,F403
from ember.ops.grid_sample import *  # noqa: F401,F403
