"""Layers (modules) with PyTorch's names and signatures."""
from ember.nn import functional, init  # noqa: F401
from ember.nn.module import *  # noqa: F401,F403
from ember.nn.linear import *  # noqa: F401,F403
from ember.nn.activation import *  # noqa: F401,F403
from ember.nn.loss import *  # noqa: F401,F403
from ember.nn.conv import *  # noqa: F401,F403
from ember.nn.pool import *  # noqa: F401,F403
from ember.nn.norm import *  # noqa: F401,F403
from ember.nn.dropout import *  # noqa: F401,F403
from ember.nn.upsample import *  # noqa: F401,F403
from ember.nn.padding import *  # noqa: F401,F403
from ember.nn.embedding import *  # noqa: F401,F403
from ember.nn import utils  # noqa: F401
