import numpy as np
import pytest

import ember


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same default generator state."""
    ember.manual_seed(0)
    yield


@pytest.fixture
def rng():
    return np.random.default_rng(0)
