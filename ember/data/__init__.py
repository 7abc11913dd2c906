"""Data loading: datasets, the DataLoader, and batch-aware transforms.

    from ember.data import DataLoader
    from ember.data.datasets import FashionMNIST
    loader = DataLoader(FashionMNIST(train=True), batch_size=128, shuffle=True)
"""
from ember.data.dataset import *  # noqa: F401,F403
from ember.data.dataloader import *  # noqa: F401,F403
from ember.data.sampler import *  # noqa: F401,F403
from ember.data import transforms, datasets  # noqa: F401
from ember.data.dataset import __all__ as _dataset_all
from ember.data.dataloader import __all__ as _loader_all
from ember.data.sampler import __all__ as _sampler_all

__all__ = list(_dataset_all) + list(_loader_all) + list(_sampler_all) + ["transforms", "datasets"]
