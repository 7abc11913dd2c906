"""GPU tests of the augmentations (ember/data/augment.py, regions.py, color.py, affine.py, mixing.py):
with their random draws pinned (p=1, one-point ranges) each gives the CPU's result on a CuPy batch,
uint8 and float32; with real randomness, a seeded generator repeats itself on the GPU and each
output keeps the invariant its transform promises. Marked ``gpu``; skipped without CuPy and a GPU
(and run on the CPU under tests/cuda_emulator.py with EMBER_EMULATE_GPU_TESTS=1)."""
from __future__ import annotations

import numpy as np
import pytest

import ember
from ember.backend import asnumpy, cupy_available
from ember.data import transforms as T
from tests.gpu_compare import dev, on

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not cupy_available(), reason="needs CuPy and a CUDA GPU")]

RNG = np.random.default_rng(11)
FLOAT = RNG.random((4, 3, 12, 12)).astype(np.float32)
UINT8 = RNG.integers(0, 256, (4, 3, 12, 12)).astype(np.uint8)

PINNED = {
    "vflip": lambda: T.RandomVerticalFlip(p=1.0),
    "pad-constant": lambda: T.Pad((1, 2), fill=3),
    "pad-edge": lambda: T.Pad(2, padding_mode="edge"),
    "pad-reflect": lambda: T.Pad(2, padding_mode="reflect"),
    "pad-symmetric": lambda: T.Pad((1, 2, 3, 0), padding_mode="symmetric"),
    "resized-crop": lambda: T.RandomResizedCrop(8, scale=(1.0, 1.0), ratio=(1.0, 1.0)),
    "resized-crop-nearest": lambda: T.RandomResizedCrop((7, 9), scale=(1.0, 1.0), ratio=(1.0, 1.0),
                                                        interpolation="nearest"),
    "grayscale": lambda: T.Grayscale(3),
    "random-grayscale": lambda: T.RandomGrayscale(p=1.0),
    "brightness": lambda: T.ColorJitter(brightness=(1.3, 1.3)),
    "contrast": lambda: T.ColorJitter(contrast=(0.6, 0.6)),
    "saturation": lambda: T.ColorJitter(saturation=(1.4, 1.4)),
    "hue": lambda: T.ColorJitter(hue=(0.1, 0.1)),
    "blur": lambda: T.GaussianBlur(5, sigma=(1.2, 1.2)),
    "rotate-90": lambda: T.RandomRotation((90, 90)),
    "rotate-bilinear": lambda: T.RandomRotation((30, 30), interpolation="bilinear", fill=0.5),
    "affine": lambda: T.RandomAffine((20, 20), scale=(1.2, 1.2), shear=(10, 10), interpolation="bilinear"),
}


@pytest.mark.parametrize("images", [FLOAT, UINT8], ids=["float32", "uint8"])
@pytest.mark.parametrize("name", list(PINNED))
def test_pinned_augmentations_match_the_cpu(name, images):
    out = {}
    for device, to in (("cpu", np.asarray), ("cuda", dev)):
        with on(device):
            out[device] = PINNED[name]()(to(images.copy()))
    assert type(out["cuda"]) is type(dev(images))  # stayed on the device
    gpu, cpu = asnumpy(out["cuda"]), out["cpu"]
    assert gpu.dtype == cpu.dtype == images.dtype and gpu.shape == cpu.shape
    # uint8 results are rounded from float arithmetic: the GPU's fused multiply-adds may tip one by 1
    np.testing.assert_allclose(gpu.astype(np.float64), cpu.astype(np.float64),
                               atol=1.0 if images.dtype == np.uint8 else 1e-5, rtol=0)


RANDOM = {
    "crop-flip": lambda g: T.Compose([T.RandomCrop(10, padding=2, generator=g), T.RandomHorizontalFlip(generator=g)]),
    "resized-crop": lambda g: T.RandomResizedCrop(8, generator=g),
    "jitter": lambda g: T.ColorJitter(0.4, 0.4, 0.4, 0.1, generator=g),
    "blur": lambda g: T.GaussianBlur(3, generator=g),
    "affine": lambda g: T.RandomAffine(15, translate=(0.1, 0.1), scale=(0.9, 1.1), shear=5, generator=g),
    "apply-choice": lambda g: T.RandomApply([T.RandomChoice([T.Grayscale(3), T.RandomVerticalFlip(1.0)],
                                                           generator=g)], p=0.7, generator=g),
}


@pytest.mark.parametrize("name", list(RANDOM))
def test_random_augmentations_repeat_with_a_seed_on_the_gpu(name):
    x = dev(FLOAT)
    a = asnumpy(RANDOM[name](ember.Generator(5))(x))
    b = asnumpy(RANDOM[name](ember.Generator(5))(x))
    np.testing.assert_array_equal(a, b)
    assert np.isfinite(a).all() and a.dtype == np.float32


def test_random_erasing_erases_one_rectangle_per_image_on_the_gpu():
    x = dev(FLOAT)
    y = asnumpy(T.RandomErasing(p=1.0, scale=(0.25, 0.25), ratio=(1.0, 1.0), value=2.0,
                                generator=ember.Generator(1))(x))
    for img in y:  # a 6x6 square of 2.0 in every channel, the rest untouched
        erased = np.argwhere((img == 2.0).all(0))
        rows, cols = np.unique(erased[:, 0]), np.unique(erased[:, 1])
        assert len(erased) == 36 and len(rows) == len(cols) == 6
        assert np.ptp(rows) == np.ptp(cols) == 5
    keep = y != 2.0
    np.testing.assert_array_equal(y[keep], FLOAT[keep])


def test_mixup_and_cutmix_on_the_gpu():
    x, labels = dev(FLOAT), dev(np.array([0, 1, 2, 1]))
    rolled = np.roll(FLOAT, 1, axis=0)
    mx, my = T.MixUp(alpha=0.4, num_classes=3, generator=ember.Generator(2))(x, labels)
    mx, my = asnumpy(mx), asnumpy(my)
    lam = my[0, 0]  # sample 0 (class 0) paired with sample 3 (class 1)
    np.testing.assert_allclose(my.sum(1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(mx, lam * FLOAT + (1 - lam) * rolled, rtol=1e-5, atol=1e-6)
    cx, cy = T.CutMix(alpha=1.0, num_classes=3, generator=ember.Generator(3))(ember.Tensor(x), ember.Tensor(labels))
    assert isinstance(cx, ember.Tensor) and cx.device == ember.Tensor(x).device  # Tensors in, on the device
    cx, cy = asnumpy(cx.data), asnumpy(cy.data)
    from_self, from_other = cx == FLOAT, cx == rolled
    assert (from_self | from_other).all()  # every pixel comes from the image or its partner
    np.testing.assert_allclose(cy[0, 0], from_self[0].mean(), rtol=1e-6)  # lambda = kept area
