"""ember.save / ember.load (safetensors layout), checkpoints with metadata, corrupt files."""
import json
import os
import pickle
import struct

import numpy as np
import pytest
import safetensors.numpy
import safetensors.torch
import torch

import ember
from ember import io as eio
from ember.backend import cupy_available
from ember.errors import FormatError
from ember.optim import Adam, SGD
from ember.optim.lr_scheduler import CosineAnnealingLR, LinearLR, SequentialLR

DTYPES = [np.float32, np.float64, np.float16, np.int64, np.int32, np.int16, np.int8, np.uint8, np.bool_,
          np.uint16, np.uint32, np.uint64]


def _sample(rng):
    out = {}
    for i, dt in enumerate(DTYPES):
        shape = [(2, 3), (4,), (), (0, 5), (1, 2, 3)][i % 5]
        out[f"t{i}.{np.dtype(dt).name}"] = np.asarray(np.abs(rng.standard_normal(shape)) * 10).astype(dt)
    return out


def test_round_trip_every_dtype_and_shape(tmp_path, rng):
    arrays = _sample(rng)
    path = tmp_path / "a.safetensors"
    ember.save({k: ember.Tensor(v) for k, v in arrays.items()}, path)
    back = ember.load(path)
    assert set(back) == set(arrays)
    for k, v in arrays.items():
        assert isinstance(back[k], ember.Tensor)
        assert back[k].dtype == v.dtype and back[k].shape == v.shape, k
        np.testing.assert_array_equal(back[k].data, v)
        back[k].data[...] = 0  # loaded arrays are writable


def test_files_open_with_safetensors_and_torch(tmp_path, rng):
    arrays = _sample(rng)
    path = str(tmp_path / "a.safetensors")
    ember.save(arrays, path, metadata={"origin": "ember"})
    theirs = safetensors.numpy.load_file(path)
    for k, v in arrays.items():
        np.testing.assert_array_equal(theirs[k], v)
        assert theirs[k].dtype == v.dtype and theirs[k].shape == v.shape
    as_torch = safetensors.torch.load_file(path)
    np.testing.assert_array_equal(as_torch["t0.float32"].numpy(), arrays["t0.float32"])
    with safetensors.safe_open(path, framework="np") as f:
        assert f.metadata() == {"origin": "ember"}


def test_reads_files_written_by_safetensors(tmp_path, rng):
    arrays = _sample(rng)
    path = str(tmp_path / "b.safetensors")
    safetensors.numpy.save_file(arrays, path, metadata={"k": "v"})
    back = ember.load(path)
    for k, v in arrays.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape
        np.testing.assert_array_equal(back[k].data, v)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    safetensors.torch.save_file(model.state_dict(), path)
    back = ember.load(path)
    assert set(back) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    np.testing.assert_array_equal(back["2.weight"].data, model[2].weight.detach().numpy())


def test_nested_dicts_are_flattened(tmp_path):
    path = tmp_path / "n.safetensors"
    ember.save({"enc": {"w": np.ones(2, np.float32), "sub": {"b": np.zeros(1)}}, "head": np.ones(3)}, path)
    assert set(ember.load(path)) == {"enc.w", "enc.sub.b", "head"}
    with pytest.raises(ValueError, match="same name 'a.b'"):
        ember.save({"a.b": np.ones(1), "a": {"b": np.ones(1)}}, path)


def test_save_rejects_non_tensors(tmp_path):
    with pytest.raises(TypeError, match="'epoch' is a int.*save_checkpoint"):
        ember.save({"w": np.ones(2), "epoch": 3}, tmp_path / "x.safetensors")
    with pytest.raises(TypeError, match="complex128"):
        ember.save({"z": np.ones(2, np.complex128)}, tmp_path / "x.safetensors")
    with pytest.raises(ValueError, match="reserved"):
        ember.save({"__metadata__": np.ones(2)}, tmp_path / "x.safetensors")
    assert not os.listdir(tmp_path)


# ---- atomic writes ----------------------------------------------------------------------------
@pytest.mark.parametrize("fail_at", ["fsync", "replace"])
def test_crash_mid_write_keeps_old_file(tmp_path, monkeypatch, fail_at):
    path = tmp_path / "ckpt.safetensors"
    ember.save({"w": np.arange(4.0)}, path)
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk on fire")

    monkeypatch.setattr(os, fail_at, crash)
    with pytest.raises(OSError, match="disk on fire"):
        ember.save({"w": np.zeros(1000)}, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["ckpt.safetensors"]  # the temporary file is gone


# ---- corrupt files ----------------------------------------------------------------------------
def _write(path, header, data: bytes, n=None, pad=True):
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text) if n is None else n) + text + data)


GOOD = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "b": {"dtype": "I64", "shape": [1], "data_offsets": [8, 16]}}


def _with(**changes):
    h = json.loads(json.dumps(GOOD))
    for key, value in changes.items():
        name, field = key.split("__")
        h[name][field] = value
    return h


CORRUPT = {
    "empty": (lambda p: p.write_bytes(b""), "too short"),
    "short": (lambda p: p.write_bytes(b"\x01\x02\x03"), "too short"),
    "huge header length": (lambda p: _write(p, GOOD, bytes(16), n=2**62), "exceeds"),
    "header past end": (lambda p: _write(p, GOOD, bytes(16), n=10_000), "runs past the end"),
    "bad json": (lambda p: _write(p, b"{not json", bytes(16)), "not valid JSON"),
    "not utf8": (lambda p: _write(p, b"\xff\xfe{}", b""), "not valid JSON"),
    "json list": (lambda p: _write(p, [1, 2], b""), "expected an object"),
    "duplicate key": (lambda p: _write(p, b'{"a": {}, "a": {}}', b""), "duplicate key"),
    "unknown dtype": (lambda p: _write(p, _with(a__dtype="BF16"), bytes(16)), "unsupported dtype 'BF16'"),
    "bad shape": (lambda p: _write(p, _with(a__shape=[-2]), bytes(16)), "invalid shape"),
    "float offsets": (lambda p: _write(p, _with(a__data_offsets=[0.0, 8]), bytes(16)), "invalid data_offsets"),
    "reversed offsets": (lambda p: _write(p, _with(a__data_offsets=[8, 0]), bytes(16)), "invalid data_offsets"),
    "shape/offset mismatch": (lambda p: _write(p, _with(a__shape=[3]), bytes(16)), "needs 12 bytes"),
    "huge shape": (lambda p: _write(p, _with(a__shape=[2**40, 2**40]), bytes(16)), "needs"),
    "overlap": (lambda p: _write(p, _with(b__data_offsets=[4, 12]), bytes(16)), "overlap"),
    "hole": (lambda p: _write(p, _with(b__data_offsets=[12, 20]), bytes(20)), "hole"),
    "out of range": (lambda p: _write(p, _with(b__data_offsets=[8, 24], b__shape=[2]), bytes(16)), "truncated"),
    "trailing garbage": (lambda p: _write(p, GOOD, bytes(20)), "trailing garbage"),
    "missing field": (lambda p: _write(p, {"a": {"dtype": "F32", "shape": [2]}}, bytes(8)), "exactly the keys"),
    "bad metadata": (lambda p: _write(p, {"__metadata__": {"k": 1}}, b""), "__metadata__"),
    "pickle": (lambda p: p.write_bytes(pickle.dumps({"w": [1.0, 2.0]})), "not a valid safetensors"),
}


@pytest.mark.parametrize("case", list(CORRUPT))
def test_corrupt_files_raise_one_format_error(tmp_path, case):
    make, problem = CORRUPT[case]
    path = tmp_path / "bad.safetensors"
    make(path)
    with pytest.raises(FormatError, match=problem) as info:
        ember.load(path)
    assert str(path) in str(info.value)
    err = info.value  # one error, not a chain of JSON/struct errors
    assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__)


def test_truncated_real_file(tmp_path, rng):
    path = tmp_path / "t.safetensors"
    ember.save({"w": rng.standard_normal((10, 10))}, path)
    data = path.read_bytes()
    for cut in (4, 20, len(data) - 1):
        path.write_bytes(data[:cut])
        with pytest.raises(FormatError, match=str(path.name)):
            ember.load(path)
    _write(path, GOOD, bytes(16))
    assert set(ember.load(path)) == {"a", "b"}  # the hand-made good file itself is accepted


# ---- training checkpoints -------------------------------------------------------------------
def _train(w, opt, sched, steps):
    for _ in range(steps):
        opt.zero_grad()
        noise = ember.randn(*w.shape, dtype=np.float64)
        loss = ((w - 1.0) * (w - 1.0)).sum() + (w * noise).sum()
        loss.backward()
        opt.step()
        sched.step()


def _make(w):
    opt = Adam([w], lr=0.1, amsgrad=True)
    sched = SequentialLR(opt, [LinearLR(opt, 0.1, total_iters=3), CosineAnnealingLR(opt, T_max=10)], [3])
    return opt, sched


def test_checkpoint_resume_is_exact(tmp_path):
    ember.manual_seed(0)
    w = ember.Tensor(np.zeros((3, 2)), requires_grad=True)
    opt, sched = _make(w)
    _train(w, opt, sched, 12)
    expected = w.data.copy()

    ember.manual_seed(0)
    w1 = ember.Tensor(np.zeros((3, 2)), requires_grad=True)
    opt1, sched1 = _make(w1)
    _train(w1, opt1, sched1, 5)
    tensors, opt_meta = eio.flatten_optimizer_state(opt1.state_dict())
    tensors["model.w"] = w1
    meta = {"epoch": 5, "optimizer": opt_meta, "scheduler": sched1.state_dict(),
            "rng": ember.random.default_generator.get_state()}
    path = tmp_path / "ckpt.safetensors"
    eio.save_checkpoint(path, tensors, meta)
    safetensors.numpy.load_file(str(path))  # still a plain safetensors file

    ember.manual_seed(123)  # resuming must restore the RNG too
    tensors, meta = eio.load_checkpoint(path)
    w2 = ember.Tensor(tensors["model.w"].data.copy(), requires_grad=True)
    opt2, sched2 = _make(w2)
    opt2.load_state_dict(eio.unflatten_optimizer_state(tensors, meta["optimizer"]))
    sched2.load_state_dict(meta["scheduler"])
    ember.random.default_generator.set_state(meta["rng"])
    assert meta["epoch"] == 5 and opt2.state[w2]["step"] == 5
    _train(w2, opt2, sched2, 7)
    np.testing.assert_array_equal(w2.data, expected)


def test_checkpoint_meta_is_json_only(tmp_path):
    with pytest.raises(TypeError, match="JSON cannot store"):
        eio.save_checkpoint(tmp_path / "c.safetensors", {}, {"f": object()})
    eio.save_checkpoint(tmp_path / "c.safetensors", {}, {"lr": np.float32(0.5), "betas": (0.9, 0.99)})
    tensors, meta = eio.load_checkpoint(tmp_path / "c.safetensors")
    assert tensors == {} and meta == {"lr": 0.5, "betas": [0.9, 0.99]}


def test_optimizer_state_flattening_round_trip():
    p = ember.Tensor(np.ones(3, np.float32), requires_grad=True)
    opt = SGD([p], lr=0.1, momentum=0.9)
    p.grad = ember.Tensor(np.ones(3, np.float32))
    opt.step()
    tensors, meta = eio.flatten_optimizer_state(opt.state_dict())
    assert list(tensors) == ["optimizer.state.0.momentum_buffer"]
    json.dumps(meta)
    sd = eio.unflatten_optimizer_state(tensors, json.loads(json.dumps(meta)))
    SGD([p], lr=0.5).load_state_dict(sd)


@pytest.mark.gpu
@pytest.mark.skipif(not cupy_available(), reason="needs CuPy and a CUDA GPU")
def test_gpu_tensors_save_and_load_on_cpu(tmp_path):
    t = ember.randn(3, 4).to("cuda")
    ember.save({"t": t}, tmp_path / "g.safetensors")
    back = ember.load(tmp_path / "g.safetensors")["t"]
    assert back.device.type == "cpu"
    np.testing.assert_array_equal(back.data, t.cpu().data)
