"""The ember command line on a tiny synthetic dataset: outputs, resume, eval, errors."""
import json

import numpy as np
import pytest

from ember.cli import build_parser, main
from ember.cli import trainer as trainer_mod

BASE = ["--data", "synthetic-shapes", "--batch-size", "32", "--val-split", "100", "--limit-train", "96",
        "--no-progress", "--log-every", "1", "--eval-batch-size", "64"]


def read(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def load(path):
    with open(path) as f:
        return json.load(f)


def train(tmp_path, *extra, name="run"):
    return main(["train", *BASE, "--out", str(tmp_path / name), *extra])


def test_train_writes_metrics_checkpoints_plot_and_eval_agrees(tmp_path, capsys):
    assert train(tmp_path, "--model", "lenet5", "--epochs", "2", "--lr", "0.05", "--warmup", "0.5") == 0
    out = tmp_path / "run"
    for f in ("last.safetensors", "best.safetensors", "metrics.jsonl", "confusion.json", "config.json"):
        assert (out / f).exists(), f
    rows = read(out / "metrics.jsonl")
    kinds = [r["type"] for r in rows]
    assert kinds.count("step") == 6 and kinds.count("epoch") == 2 and kinds[-1] == "test"
    assert all(np.isfinite(r["loss"]) for r in rows if r["type"] == "step")
    printed = capsys.readouterr().out
    assert "epoch   1/2" in printed and "test accuracy" in printed and "confusion matrix" in printed
    pytest.importorskip("matplotlib")
    assert (out / "curves.png").stat().st_size > 1000
    # eval rebuilds the model from the checkpoint's metadata and agrees with the final test line
    assert main(["eval", "--checkpoint", str(out / "last.safetensors"), "--json", str(tmp_path / "e.json")]) == 0
    res = load(tmp_path / "e.json")
    assert res["accuracy"] == pytest.approx(rows[-1]["accuracy"])
    cm = np.array(res["confusion"])
    assert cm.shape == (3, 3) and cm.sum() == 150
    assert "per-class accuracy" in capsys.readouterr().out


@pytest.mark.parametrize("mix", [[], ["--mixup", "0.4", "--cutmix", "1.0"]], ids=["plain", "mixup-cutmix"])
@pytest.mark.parametrize("stop_at", [2, 3, 5])  # mid-epoch, at an epoch's last step, in the second epoch
def test_resume_continues_with_the_same_loss_trace(tmp_path, monkeypatch, stop_at, mix):
    args = ["--model", "mlp", "--model-arg", "hidden=[32]", "--model-arg", "dropout=0.3", "--augment",
            "--epochs", "3", "--lr", "0.1", "--optimizer", "sgd", *mix]
    assert train(tmp_path, *args, name="full") == 0
    full = [r["loss"] for r in read(tmp_path / "full" / "metrics.jsonl") if r["type"] == "step"]

    original = trainer_mod.Trainer._log

    def interrupting_log(self, record):
        original(self, record)
        if record["type"] == "step" and record["global_step"] == stop_at:
            raise KeyboardInterrupt

    monkeypatch.setattr(trainer_mod.Trainer, "_log", interrupting_log)
    assert train(tmp_path, *args, name="cut") == 130  # Ctrl+C: checkpoint saved, clean exit code
    monkeypatch.setattr(trainer_mod.Trainer, "_log", original)
    assert (tmp_path / "cut" / "last.safetensors").exists()
    assert train(tmp_path, *args, "--resume", name="cut") == 0
    resumed = read(tmp_path / "cut" / "metrics.jsonl")
    losses = [r["loss"] for r in resumed if r["type"] == "step"]
    assert [r["global_step"] for r in resumed if r["type"] == "step"] == list(range(1, 10))
    np.testing.assert_array_equal(losses, full)


def test_unknown_model_and_dataset_list_valid_names(tmp_path, capsys):
    assert train(tmp_path, "--model", "lenet7") == 2
    err = capsys.readouterr().err
    assert "lenet7" in err and "lenet5" in err and "resnet20" in err
    assert main(["train", "--data", "imagenet-22k", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "fashion-mnist" in err and "synthetic-shapes" in err


def test_non_finite_loss_stops_naming_the_step(tmp_path, capsys):
    rc = train(tmp_path, "--model", "mlp", "--lr", "1e30", "--momentum", "0", "--epochs", "2",
               "--model-arg", "dropout=0")
    assert rc == 1
    err = capsys.readouterr().err
    assert "non-finite loss" in err and "step" in err


def test_overfit_batch_smoke_test(tmp_path, capsys):
    rc = train(tmp_path, "--model", "lenet5", "--overfit-batch", "--overfit-steps", "40", "--epochs", "1",
               "--optimizer", "adam", "--lr", "0.003", "--weight-decay", "0")
    assert rc == 0, capsys.readouterr().out
    assert "overfit-batch: 100.0%" in capsys.readouterr().out


def test_config_file_with_flags_winning(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[train]\nmodel = "mlp"\nepochs = 1\nbatch-size = 48\nlr = 0.02\n')
    assert train(tmp_path, "--config", str(cfg), "--lr", "0.03") == 0
    conf = load(tmp_path / "run" / "config.json")
    assert conf["model"] == "mlp" and conf["epochs"] == 1 and conf["lr"] == 0.03
    assert conf["batch_size"] == 32  # given as a flag in BASE: the flag wins
    bad = tmp_path / "bad.toml"
    bad.write_text("epochz = 3\n")
    assert train(tmp_path, "--config", str(bad)) == 2


def test_every_flag_has_help_and_inspect_summary_are_offered():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert {"train", "eval", "inspect", "summary"} <= set(sub.choices)
    for name in ("train", "eval"):
        for action in sub.choices[name]._actions:
            assert action.help, f"{name} {action.option_strings} has no help"
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0


def test_label_smoothing_keeps_the_loss_above_the_smoothed_entropy(tmp_path, capsys):
    # With 3 classes and eps = 0.3 the smoothed target is (0.8, 0.1, 0.1): no prediction can bring the
    # cross-entropy below its entropy, 0.639, while without smoothing an overfit batch goes towards 0.
    common = ("--model", "lenet5", "--overfit-batch", "--overfit-steps", "60", "--epochs", "1",
              "--optimizer", "adam", "--lr", "0.003", "--weight-decay", "0")
    assert train(tmp_path, *common, "--label-smoothing", "0.3", name="ls") == 0
    assert train(tmp_path, *common, name="plain") == 0
    floor = -(0.8 * np.log(0.8) + 2 * 0.1 * np.log(0.1))
    last = {n: [r for r in read(tmp_path / n / "metrics.jsonl") if r.get("type") == "step"][-1]["loss"]
            for n in ("ls", "plain")}
    assert last["ls"] >= floor - 1e-3
    assert last["plain"] < floor - 0.2


@pytest.mark.parametrize("name,cls", [("sgd", "SGD"), ("adam", "Adam"), ("adamw", "AdamW"), ("rmsprop", "RMSprop"),
                                      ("adagrad", "Adagrad"), ("adadelta", "Adadelta"), ("adamax", "Adamax"),
                                      ("nadam", "NAdam"), ("radam", "RAdam")])
def test_every_optimizer_choice_builds_its_optimizer(name, cls):
    import ember
    from ember.cli.train import _make_optimizer

    args = build_parser().parse_args(["train", "--optimizer", name, "--lr", "0.02", "--weight-decay", "0.001"])
    opt = _make_optimizer(args, [ember.zeros(3, requires_grad=True)])
    assert type(opt).__name__ == cls and opt.param_groups[0]["lr"] == 0.02
    assert opt.param_groups[0]["weight_decay"] == 0.001


def test_mixup_and_cutmix_flags_mix_the_batches(tmp_path):
    """Each flag changes the loss trace; with both, batches get one or the other at random."""
    from ember.cli.train import make_mix
    from ember.data import transforms as T
    import ember

    traces = {}
    for name, extra in (("plain", []), ("mixup", ["--mixup", "0.4"]), ("cutmix", ["--cutmix", "1.0"])):
        assert train(tmp_path, "--model", "mlp", "--epochs", "1", "--lr", "0.1", *extra, name=name) == 0
        traces[name] = [r["loss"] for r in read(tmp_path / name / "metrics.jsonl") if r["type"] == "step"]
    assert traces["plain"] != traces["mixup"] and traces["plain"] != traces["cutmix"] != traces["mixup"]
    gen = ember.Generator(0)
    both = make_mix(0.4, 1.0, 3, gen)
    picked = []
    x, y = np.random.default_rng(0).random((4, 1, 8, 8)).astype(np.float32), np.array([0, 1, 2, 0])
    original = (T.MixUp.__call__, T.CutMix.__call__)
    try:
        T.MixUp.__call__ = lambda self, x, y: picked.append("mixup") or original[0](self, x, y)
        T.CutMix.__call__ = lambda self, x, y: picked.append("cutmix") or original[1](self, x, y)
        for _ in range(40):
            xm, ym = both(x, y)
            assert ym.shape == (4, 3) and np.allclose(ym.sum(1), 1.0)
    finally:
        T.MixUp.__call__, T.CutMix.__call__ = original
    assert 10 < picked.count("mixup") < 30 and picked.count("mixup") + picked.count("cutmix") == 40
    assert make_mix(0.0, 0.0, 3, gen) is None
    with pytest.raises(ValueError, match="--cutmix must be >= 0"):
        make_mix(0.2, -1.0, 3, gen)
