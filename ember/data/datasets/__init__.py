"""Datasets: MNIST, FashionMNIST, CIFAR10, ImageFolder, small synthetic sets and segmentation scenes."""
from ember.data.datasets.files import cache_dir, download_file, find_dataset_files  # noqa: F401
from ember.data.datasets.idx import MNIST, FashionMNIST, read_idx  # noqa: F401
from ember.data.datasets.cifar10 import CIFAR10  # noqa: F401
from ember.data.datasets.image_folder import ImageFolder  # noqa: F401
from ember.data.datasets.synthetic import XOR, Blobs, Shapes, Spirals  # noqa: F401
from ember.data.datasets.scenes import FashionScenes, SegmentationFolder, SkyBird  # noqa: F401

__all__ = ["MNIST", "FashionMNIST", "CIFAR10", "ImageFolder", "Blobs", "Spirals", "XOR", "Shapes",
           "FashionScenes", "SkyBird", "SegmentationFolder",
           "read_idx", "cache_dir", "download_file", "find_dataset_files"]
