"""The training loop: outputs, refusals, checkpoints and an exact resume after a kill."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from sgc import __version__
from sgc.classes import CLASS_NAMES
from sgc.model.unet import UNet
from sgc.patches.planfile import read_plan, write_plan
from sgc.train.checkpoint import load_checkpoint, load_model
from sgc.train.loop import BEST, LAST, TrainError, TrainResult, label_counts, train
from tests.train.conftest import tiny_config

REPO = Path(__file__).resolve().parents[2]


def test_training_writes_metrics_and_checkpoints(tiny_run, tmp_path: Path) -> None:
    store, plan = tiny_run
    result = train(store, plan, tmp_path / "run", tiny_config())
    assert result.epochs == 3 and len(result.history) == 3
    with (tmp_path / "run" / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert {"train_loss", "val_loss", "val_f1_star", "val_f1_galaxy", "val_f1_sky", "lr"} <= set(rows[0])
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    last = load_checkpoint(tmp_path / "run" / LAST)
    assert last["state"]["epoch"] == 2 and last["state"]["finished"]
    best = load_checkpoint(tmp_path / "run" / BEST)
    assert best["state"]["epoch"] == result.best_epoch
    assert any((tmp_path / "run" / "tb").iterdir())


def test_the_bright_objects_are_learned(tiny_run, tmp_path: Path) -> None:
    store, plan = tiny_run
    result = train(store, plan, tmp_path / "run", tiny_config(epochs=20))
    assert result.history[-1]["val_f1_star"] > 0.9
    assert result.history[-1]["val_f1_galaxy"] > 0.8


def test_training_starts_from_the_weights_it_is_given(tiny_run, tmp_path: Path) -> None:
    store, plan = tiny_run
    train(store, plan, tmp_path / "pre", tiny_config(epochs=2))
    pretrained = load_checkpoint(tmp_path / "pre" / BEST)["model"]
    # One step at a negligible learning rate: the weights are still those it started from.
    train(
        store,
        plan,
        tmp_path / "fine",
        tiny_config(epochs=1, max_steps=1, lr=1e-12, init=tmp_path / "pre" / BEST),
    )
    tuned = load_checkpoint(tmp_path / "fine" / LAST)["model"]
    fresh = UNet(tiny_config().model).state_dict()
    weights = [k for k, v in pretrained.items() if v.dtype.is_floating_point and "running" not in k]
    for key in weights:
        torch.testing.assert_close(tuned[key], pretrained[key], rtol=1e-6, atol=1e-8)
    assert any(not torch.allclose(fresh[k], pretrained[k]) for k in weights)
    with pytest.raises(TrainError, match="another model"):
        wider = {"depth": 2, "width": 8, "norm": "group"}
        train(store, plan, tmp_path / "wide", tiny_config(model=wider, init=tmp_path / "pre" / BEST))


def test_a_folder_with_a_run_is_not_overwritten(tiny_run, tmp_path: Path) -> None:
    store, plan = tiny_run
    train(store, plan, tmp_path / "run", tiny_config(epochs=1))
    with pytest.raises(TrainError, match="holds a run already"):
        train(store, plan, tmp_path / "run", tiny_config(epochs=1))
    with pytest.raises(TrainError, match="other settings.*lr"):
        train(store, plan, tmp_path / "run", tiny_config(epochs=1, lr=0.5), resume=True)


def test_a_run_is_not_resumed_on_another_plan(tiny_run, tmp_path: Path) -> None:
    store, plan_path = tiny_run
    train(store, plan_path, tmp_path / "run", tiny_config(epochs=1))
    other = read_plan(plan_path)
    other.normalisation["r"]["median"] += 1.0
    changed = write_plan(other, tmp_path / "other-plan.zarr")
    with pytest.raises(TrainError, match="trained on another patch plan"):
        train(store, changed, tmp_path / "run", tiny_config(epochs=1), resume=True)


def test_a_checkpoint_carries_what_inference_needs(tiny_run, tmp_path: Path) -> None:
    store, plan_path = tiny_run
    cfg = tiny_config(epochs=1)
    train(store, plan_path, tmp_path / "run", cfg)
    plan = read_plan(plan_path)
    moved = tmp_path / "elsewhere.pt"
    (tmp_path / "run" / BEST).rename(moved)  # no run folder, no plan, no store needed
    model, spec = load_model(moved)
    assert spec.model == cfg.model and spec.patch == plan.patch and spec.sgc_version == __version__
    assert spec.bands == ("u", "g", "r", "i", "z") and spec.classes == CLASS_NAMES
    for band, stats in plan.normalisation.items():
        assert spec.normalisation[band] == {"median": stats["median"], "robust_sigma": stats["robust_sigma"]}
    scale, offset = spec.scaling()
    np.testing.assert_allclose(
        offset / scale, [-plan.normalisation[b]["median"] for b in spec.bands], rtol=1e-6
    )
    assert not model.training
    reference = UNet(cfg.model)
    reference.load_state_dict(load_checkpoint(moved)["model"])
    reference.eval()
    x = torch.randn(2, 5, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x))


def test_resuming_a_finished_run_does_nothing(tiny_run, tmp_path: Path) -> None:
    store, plan = tiny_run
    train(store, plan, tmp_path / "run", tiny_config(epochs=1))
    before = (tmp_path / "run" / LAST).read_bytes()
    result = train(store, plan, tmp_path / "run", tiny_config(epochs=1), resume=True)
    assert result.history == [] and (tmp_path / "run" / LAST).read_bytes() == before


def test_label_counts_follow_oversampling(tiny_run) -> None:
    _, plan_path = tiny_run
    plan = read_plan(plan_path)
    once, thrice = label_counts(plan, "train", 1), label_counts(plan, "train", 3)
    rows = plan.rows("train")
    assert once.tolist() == [int(np.sum(rows[c])) for c in ("n_sky", "n_star", "n_galaxy")]
    assert thrice[1] == 3 * once[1] and thrice[0] > once[0]


def _train_command(store: Path, plan: Path, out: Path, config: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "sgc",
        "train",
        str(store),
        str(plan),
        "--out",
        str(out),
        "--config",
        str(config),
        *extra,
    ]


def _final_weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / LAST)["model"]


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_same_weights(tiny_run, tmp_path: Path) -> None:
    store, plan = tiny_run
    config = tmp_path / "config.yaml"
    train_cfg = tiny_config(epochs=4).model_dump(mode="json")
    train_cfg["loader"]["workers"] = 1  # through a DataLoader worker, as in real runs
    config.write_text(yaml.safe_dump({"name": "tiny", "train": train_cfg}))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # identical arithmetic in every process
    straight = tmp_path / "straight"
    subprocess.run(_train_command(store, plan, straight, config), check=True, env=env, capture_output=True)

    killed = tmp_path / "killed"
    process = subprocess.Popen(
        _train_command(store, plan, killed, config), env=env, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while not (killed / LAST).exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = load_checkpoint(killed / LAST)["state"]
    assert not done["finished"], "the run finished before it could be killed; make it longer"
    resumed = subprocess.run(
        _train_command(store, plan, killed, config, "--resume"),
        check=True,
        env=env,
        capture_output=True,
        text=True,
    )
    assert "4 epochs" in resumed.stderr
    expected, got = _final_weights(straight), _final_weights(killed)
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name
    with (killed / "metrics.csv").open() as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [0, 1, 2, 3]


def test_a_run_without_a_validation_split_reports_its_train_loss_not_an_f1() -> None:
    text = TrainResult(Path("run"), 3, 2, -1.621, stopped_early=False, validated=False).format()
    assert "no validation split: lowest train loss 1.6210 at epoch 2" in text
    assert "F1" not in text
