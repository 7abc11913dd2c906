"""Segmentation: datasets (FashionScenes, SkyBird, SegmentationFolder), metrics, models, train/eval loop."""
import json

import numpy as np
import pytest
import torch

import ember
import ember.nn.functional as F
from ember.data.datasets.idx import FashionMNIST
from ember.data.datasets.scenes import FashionScenes, SegmentationFolder, SkyBird
from ember.errors import ShapeError
from ember.metrics import SegmentationMetrics, confusion_matrix, iou_per_class, mean_iou, pixel_accuracy
from ember.models.segmentation import FCN, DilatedNet, UNet, bilinear_kernel


def _have_fashion():
    try:
        FashionMNIST(train=False)
        return True
    except FileNotFoundError:
        return False


needs_fashion = pytest.mark.skipif(not _have_fashion(), reason="Fashion-MNIST files not installed")


# ---------------------------------------------------------------- datasets

@needs_fashion
def test_fashion_scenes_deterministic_from_seed():
    a = FashionScenes(train=False, num_scenes=12, canvas=48, seed=3)
    b = FashionScenes(train=False, num_scenes=12, canvas=48, seed=3)
    c = FashionScenes(train=False, num_scenes=12, canvas=48, seed=4)
    np.testing.assert_array_equal(a.data, b.data)
    np.testing.assert_array_equal(a.targets, b.targets)
    assert not np.array_equal(a.targets, c.targets)
    x, y = a.get_batch(np.arange(5))
    assert x.shape == (5, 1, 48, 48) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert y.shape == (5, 48, 48) and y.dtype == np.int64
    assert set(np.unique(a.targets)) <= set(range(11)) | {255}
    per_scene = np.bincount(a.boxes[:, 0], minlength=12)
    assert per_scene.min() >= 1 and per_scene.max() <= 4


@needs_fashion
@pytest.mark.parametrize("train", [False, True])
def test_fashion_scenes_masks_match_placed_items(train):
    ds = FashionScenes(train=train, num_scenes=10, canvas=64, seed=1, threshold=0.2)
    src = FashionMNIST(train=train)
    covered = np.zeros(ds.targets.shape, bool)
    for k, (n, cls, top, left, h, w) in enumerate(ds.boxes):
        assert src.targets[ds.sources[k]] == cls  # the item comes from this split with its label
        covered[n, top:top + h, left:left + w] = True
    for n in range(len(ds)):
        k = np.nonzero(ds.boxes[:, 0] == n)[0][-1]  # the last pasted item is on top of the others
        _, cls, top, left, h, w = ds.boxes[k]
        item = torch.tensor(src.data[ds.sources[k], :, :, 0][None, None] / 255.0, dtype=torch.float64)
        patch = torch.nn.functional.interpolate(item, size=(h, w), mode="bilinear", align_corners=False)
        patch = patch[0, 0].clamp(0, 1).numpy()
        lab = ds.targets[n, top:top + h, left:left + w]
        img = ds.data[n, top:top + h, left:left + w, 0] / 255.0
        assert (lab[patch > 0.2 + 1e-4] == cls + 1).all()
        assert (lab[(patch > 0.02 + 1e-4) & (patch < 0.2 - 1e-4)] == 255).all()  # faint rim: ignored
        np.testing.assert_allclose(img[patch > 0.03], patch[patch > 0.03], atol=1 / 255 + 1e-5)
    assert (ds.targets[~covered] == 0).all() and (ds.data[..., 0][~covered] == 0).all()


def test_fashion_scenes_rejects_small_canvas():
    with pytest.raises(ShapeError, match="canvas 32"):
        FashionScenes(canvas=32, scale=(1.0, 1.5), num_scenes=1)


def test_sky_bird_labels_follow_the_bird():
    a, b = SkyBird(n=16, size=24, seed=5), SkyBird(n=16, size=24, seed=5)
    np.testing.assert_array_equal(a.data, b.data)
    x, y = a.get_batch(np.arange(16))
    assert x.shape == (16, 3, 24, 24) and y.shape == (16, 24, 24) and y.dtype == np.int64
    bird = y == 1
    assert bird.any(axis=(1, 2)).all()  # every image has a bird
    brightness = x.mean(axis=1)
    assert brightness[bird].max() < 0.35 < brightness[~bird].min()  # the dark bird vs the lighter sky


def test_segmentation_folder_round_trip(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    rng = np.random.default_rng(0)
    masks = []
    for i in range(2):
        img = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
        mask = rng.integers(0, 3, (6, 5), dtype=np.uint8)
        mask[0, 0] = 255
        Image.fromarray(img).save(tmp_path / "images" / f"s{i}.png")
        Image.fromarray(mask, mode="L").save(tmp_path / "masks" / f"s{i}.png")
        masks.append(mask)
    ds = SegmentationFolder(tmp_path)
    assert len(ds) == 2
    x, y = ds[1]
    assert x.shape == (3, 6, 5) and x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_array_equal(y, masks[1])
    Image.fromarray(np.zeros((4, 4), np.uint8), mode="L").save(tmp_path / "masks" / "s0.png")
    with pytest.raises(ShapeError, match="s0.png is 6x5 but its mask s0.png is 4x4"):
        ds[0]
    (tmp_path / "images" / "s9.png").write_bytes((tmp_path / "images" / "s1.png").read_bytes())
    with pytest.raises(FileNotFoundError, match="s9.png"):
        SegmentationFolder(tmp_path)


# ---------------------------------------------------------------- metrics

def test_metrics_match_hand_computed_values():
    target = np.array([[0, 0, 1], [1, 2, 255]])
    pred = np.array([[0, 1, 1], [1, 1, 0]])
    cm = confusion_matrix(pred, target, 3, ignore_index=255)
    # rows = true, cols = predicted; the ignored pixel (pred 0) is not counted
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 2, 0], [0, 1, 0]])
    assert pixel_accuracy(cm) == pytest.approx(3 / 5)
    # IoU0 = 1/(2+1-1) = 1/2, IoU1 = 2/(2+4-2) = 1/2, IoU2 = 0/(1+0-0) = 0
    np.testing.assert_allclose(iou_per_class(cm), [0.5, 0.5, 0.0])
    assert mean_iou(cm) == pytest.approx(1 / 3)


def test_metrics_absent_class_and_scores_and_accumulation():
    cm = confusion_matrix(np.array([0, 0, 1]), np.array([0, 1, 1]), 4, ignore_index=None)
    iou = iou_per_class(cm)
    assert np.isnan(iou[2]) and np.isnan(iou[3])  # absent in both: left out of the mean
    assert mean_iou(cm) == pytest.approx((0.5 + 0.5) / 2)
    rng = np.random.default_rng(0)
    scores = rng.standard_normal((3, 4, 5, 6)).astype(np.float32)
    target = rng.integers(0, 4, (3, 5, 6))
    m = SegmentationMetrics(4, ignore_index=255)
    m.update(ember.tensor(scores[:2]), ember.tensor(target[:2]))
    m.update(scores[2:], target[2:])
    pred = scores.argmax(1)
    expected = np.zeros((4, 4), np.int64)
    for t, p in zip(target.ravel(), pred.ravel()):  # the obvious loop, as the oracle
        expected[t, p] += 1
    np.testing.assert_array_equal(m.cm, expected)
    out = m.compute()
    assert out["pixel_accuracy"] == pytest.approx((pred == target).mean())
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\)"):
        confusion_matrix(np.array([0, 5]), np.array([0, 1]), 4)
    with pytest.raises(ShapeError, match="pred has shape"):
        confusion_matrix(np.zeros((2, 3)), np.zeros((3, 2)), 4)


# ---------------------------------------------------------------- models

TINY = [
    (FCN, dict(channels=(8, 16, 16), head_channels=16)),
    (DilatedNet, dict(width=12, front=1, dilations=(1, 2, 4))),
    (UNet, dict(channels=(8, 16))),
]


@pytest.mark.parametrize("cls,kw", TINY, ids=lambda v: getattr(v, "__name__", ""))
def test_models_overfit_one_batch(cls, kw):
    ember.manual_seed(0)
    ds = SkyBird(n=4, size=16, seed=2)
    x, y = (ember.tensor(a) for a in ds.get_batch(np.arange(4)))
    model = cls(num_classes=2, in_channels=3, **kw)
    out = model(x)
    assert out.shape == (4, 2, 16, 16)
    opt = ember.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(80):
        loss = F.cross_entropy(model(x), y, ignore_index=255)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()  # judged with the running statistics, as a user would
    with ember.no_grad():
        acc = (model(x).data.argmax(1) == y.data).mean()
    assert acc > 0.98, f"{cls.__name__}: pixel accuracy {acc:.3f} after overfitting one batch"


def test_dilated_net_is_translation_equivariant():
    ember.manual_seed(1)
    model = DilatedNet(num_classes=3, in_channels=1, width=4, front=1, dilations=(1, 2)).eval()
    rf_radius = (3 + 2 * 1 + 2 * 2 - 1) // 2  # receptive field 9
    x = np.random.default_rng(0).standard_normal((1, 1, 32, 32)).astype(np.float32)
    dy, dx = 3, 2
    shifted = np.roll(x, (dy, dx), axis=(2, 3))
    with ember.no_grad():
        y = model(ember.tensor(x)).data
        ys = model(ember.tensor(shifted)).data
    m = rf_radius + max(dy, dx)  # away from the borders and the wrapped rows
    np.testing.assert_allclose(ys[..., m + dy:32 - m + dy, m + dx:32 - m + dx], y[..., m:32 - m, m:32 - m],
                               rtol=1e-4, atol=1e-5)
    assert not np.allclose(ys, y)


@pytest.mark.parametrize("model,size,multiple", [(UNet(channels=(4, 8, 16)), 30, 4), (FCN(channels=(4, 8, 8)), 20, 8)])
def test_size_not_divisible_raises(model, size, multiple):
    with pytest.raises(ShapeError, match=rf"input size {size}x{size} is not divisible by {multiple}"):
        model(ember.zeros(1, 1, size, size))


def test_any_divisible_size_and_dilated_any_size():
    assert UNet(channels=(4, 8))(ember.zeros(2, 1, 6, 10)).shape == (2, 11, 6, 10)
    assert FCN(channels=(4, 8), skips=1)(ember.zeros(1, 1, 12, 8)).shape == (1, 11, 12, 8)
    assert DilatedNet(width=4, dilations=(1, 2))(ember.zeros(1, 1, 7, 5)).shape == (1, 11, 7, 5)


def test_fcn_upsampling_starts_bilinear():
    up = torch.nn.ConvTranspose2d(3, 3, 4, stride=2, padding=1, bias=False)
    with torch.no_grad():
        up.weight.copy_(torch.tensor(bilinear_kernel(3, 4)))
    x = torch.rand(1, 3, 5, 5)
    ref = torch.nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    ours = FCN(num_classes=3, channels=(4, 4), skips=1).upscore2[0](ember.tensor(x.numpy())).data
    np.testing.assert_allclose(ours[..., 1:-1, 1:-1], ref.numpy()[..., 1:-1, 1:-1], atol=1e-6)  # interior
    np.testing.assert_allclose(ours, up(x).detach().numpy(), atol=1e-6)


# ---------------------------------------------------------------- train / eval loop

def test_segment_train_and_eval_write_metrics(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from ember.cli import main

    out = tmp_path / "run"
    assert main(["train", "--task", "segment", "--model", "unet", "--data", "sky-bird", "--canvas", "16",
                 "--train-scenes", "16", "--test-scenes", "8", "--epochs", "1", "--batch-size", "8", "--lr", "0.01",
                 "--model-arg", "channels=[4, 8]", "--grid", "2", "--augment", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "mean IoU" in text and "IoU bird" in text
    m = json.loads((out / "metrics.json").read_text())
    assert json.loads((out / "config.json").read_text())["augment"] is True
    assert 0 <= m["mean_iou"] <= 1 and len(m["confusion_matrix"]) == 2
    assert (out / "predictions.png").stat().st_size > 0
    assert main(["eval", "--task", "segment", "--checkpoint", str(out / "best.safetensors"),
                 "--json", str(tmp_path / "eval.json")]) == 0
    assert json.loads((tmp_path / "eval.json").read_text())["mean_iou"] == pytest.approx(m["mean_iou"])


def test_print_metrics_writes_to_the_current_stdout(monkeypatch):
    # Regression: the stream used to be bound at import time, so after the stdout a test
    # captured was closed, `ember train --task segment` crashed with "I/O operation on closed file".
    import io

    from ember.cli import segment

    buf = io.StringIO()
    monkeypatch.setattr("sys.stdout", buf)
    segment._print_metrics({"pixel_accuracy": 0.5, "mean_iou": 0.25, "iou": {"background": 0.5, "bird": None}})
    out = buf.getvalue()
    assert "mean IoU 0.2500" in out and "bird" in out and "n/a" in out


def test_random_hflip_pair_mirrors_image_and_mask_together():
    from ember.cli.segment import random_hflip_pair

    rng = np.random.default_rng(0)
    x = rng.random((64, 1, 5, 7)).astype(np.float32)
    y = rng.integers(0, 11, (64, 5, 7))
    fx, fy = random_hflip_pair(ember.tensor(x), ember.tensor(y), np.random.default_rng(1))
    flipped = np.array([np.array_equal(fx.data[i], x[i, :, :, ::-1]) for i in range(64)])
    kept = np.array([np.array_equal(fx.data[i], x[i]) for i in range(64)])
    assert np.all(flipped ^ kept)  # every sample is either mirrored or untouched
    assert 16 < flipped.sum() < 48  # about half of them are mirrored
    np.testing.assert_array_equal(fy.data[flipped], y[flipped][..., ::-1])  # the mask follows its image
    np.testing.assert_array_equal(fy.data[~flipped], y[~flipped])
    again, _ = random_hflip_pair(ember.tensor(x), ember.tensor(y), np.random.default_rng(1))
    np.testing.assert_array_equal(again.data, fx.data)  # reproducible from the generator


def test_fit_with_augment_reports_the_final_epoch(tmp_path):
    from ember.cli.segment import fit

    train, test = SkyBird(n=16, size=16, seed=0), SkyBird(n=8, size=16, seed=1)
    model = UNet(num_classes=2, in_channels=3, channels=(4, 8))
    res = fit(model, train, test, 2, epochs=2, batch_size=8, lr=0.01, augment=True, out=tmp_path, log=lambda s: None)
    assert len(res["history"]) == 2 and res["steps"] == 4
    assert res["final"]["mean_iou"] == pytest.approx(res["history"][-1]["mean_iou"])
    assert res["best"]["mean_iou"] >= res["final"]["mean_iou"]
    assert (tmp_path / "last.safetensors").exists()
