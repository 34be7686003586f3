"""The search space of sgc tune: read from YAML, checked against the config, every problem one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from typer.testing import CliRunner

from sgc.cli import app
from sgc.config import RunConfig, load_config
from sgc.tune.space import DEFAULT_SPACE, SpaceError, load_space, nested, parse_space


def test_the_built_in_space_is_valid_and_round_trips() -> None:
    cfg = RunConfig()
    space = load_space(None, cfg)
    assert list(space.distributions) == list(DEFAULT_SPACE)
    assert space.distributions["train.lr"] == FloatDistribution(3e-4, 1e-2, log=True)
    assert space.distributions["train.loader.oversample"] == IntDistribution(1, 4)
    assert space.distributions["train.loss.kind"] == CategoricalDistribution(["ce", "ce+dice", "ce+focal"])
    # What space.yaml records reads back as the same space.
    assert parse_space(space.to_data(), "again", cfg).distributions == space.distributions


def test_a_space_file_takes_types_from_the_config(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(
        "train.lr: {low: 1e-4, high: 1e-2, log: true}\n"  # YAML reads 1e-4 as a string
        "train.epochs: {low: 2, high: 10, step: 2}\n"
        "label.ignore_ring_px: {low: 1, high: 3}\n"  # a float setting, whole bounds
        "train.loss.kind: [ce, ce+focal]\n"
    )
    space = load_space(path, RunConfig())
    assert space.distributions == {
        "train.lr": FloatDistribution(1e-4, 1e-2, log=True),
        "train.epochs": IntDistribution(2, 10, step=2),
        "label.ignore_ring_px": FloatDistribution(1.0, 3.0),
        "train.loss.kind": CategoricalDistribution(["ce", "ce+focal"]),
    }
    assert nested({"train.loss.kind": "ce", "train.lr": 0.01, "label.mode": "disk"}) == {
        "train": {"loss": {"kind": "ce"}, "lr": 0.01},
        "label": {"mode": "disk"},
    }


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("train.nope: [1, 2]", "train.nope: not a config key (train has no 'nope'"),
        ("train.loss: [ce]", "train.loss: is a section of the config"),
        ("train.lr.x: [1]", "train.lr.x: not a config key (train.lr is a setting)"),
        ("compute.workers: [1, 2]", "compute.workers: not searched by sgc tune"),
        ("name: [a, b]", "name: not searched by sgc tune"),
        ("train.lr: {low: 0.1, high: 0.01}", "train.lr: low (0.1) must be below high (0.01)"),
        ("train.lr: {low: 0, high: 1, log: true}", "train.lr: a log scale needs low above 0"),
        ("train.lr: {low: -1, high: 1}", "train.lr: -1.0 is not a value of this setting"),
        ("train.lr: {low: 1e-4}", "train.lr: a numeric distribution needs low and high"),
        ("train.lr: {low: a, high: 1}", "train.lr: low 'a' is not a number"),
        ("train.lr: {low: 0.1, high: 1, spread: 2}", "train.lr: unknown field(s) spread"),
        ("train.lr: 0.01", "train.lr: expected {low: L, high: H}"),
        ("train.epochs: {low: 1, high: 2.5}", "train.epochs: high 2.5 is not a whole number"),
        ("train.loss.kind: [ce, bogus]", "train.loss.kind: 'bogus' is not a value of this setting"),
        ("train.loss.kind: {low: 1, high: 2}", "train.loss.kind: the setting is not a number"),
        ("train.model.width: {choices: []}", "train.model.width: choices must be a non-empty list"),
        ("train.model.width: [8, 8]", "train.model.width: choices [8, 8] repeat a value"),
        ("train.lr: {type: normal, low: 0, high: 1}", "train.lr: type 'normal' is not one of"),
    ],
)
def test_a_bad_space_names_the_file_and_the_key(tmp_path: Path, entry: str, message: str) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(entry + "\n")
    with pytest.raises(SpaceError) as caught:
        load_space(path, RunConfig())
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_file_that_is_not_a_space(tmp_path: Path) -> None:
    cfg = RunConfig()
    broken = tmp_path / "broken.yaml"
    broken.write_text("train.lr: [1, 2\n")
    with pytest.raises(SpaceError, match=f"^{broken}: search space is not valid YAML"):
        load_space(broken, cfg)
    with pytest.raises(SpaceError, match="search space file does not exist"):
        load_space(tmp_path / "missing.yaml", cfg)
    listed = tmp_path / "list.yaml"
    listed.write_text("- train.lr\n")
    with pytest.raises(SpaceError, match=f"^{listed}: expected a mapping of dotted config keys"):
        load_space(listed, cfg)


def test_rules_between_settings_are_left_to_the_trials() -> None:
    # split.patch 40 is not a multiple of 2**depth (16) for the default depth, but the same space may draw
    # a depth it is one for: the space takes it, and a trial that draws it with depth 4 fails on its own.
    cfg = load_config(None, [])
    space = parse_space({"split.patch": [40, 64], "train.model.depth": [3, 4]}, "space", cfg)
    assert space.distributions["split.patch"] == CategoricalDistribution([40, 64])


def test_the_command_refuses_a_bad_space_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(f"name: bad\nworkdir: {tmp_path / 'stores'}\n")
    space = tmp_path / "space.yaml"
    space.write_text("train.learning_rate: {low: 1e-4, high: 1e-2}\n")
    result = CliRunner().invoke(app, ["tune", str(config), "--space", str(space)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines == [
        f"error: {space}: train.learning_rate: not a config key (train has no 'learning_rate'; "
        "`sgc config` lists every key)"
    ]
    # Nothing was started or written.
    assert not (tmp_path / "stores").exists()
    for option, message in (
        (["--metric", "f2"], "error: --metric f2: not one of"),
        (["--folds", "1"], "error: --folds 1: cross-validation needs at least 2 folds"),
        (["--pruner", "asha"], "error: --pruner asha: not one of median, hyperband, none"),
        (["--trials", "0"], "error: --trials 0: a search needs at least 1 trial"),
    ):
        result = CliRunner().invoke(app, ["tune", str(config), *option])
        assert result.exit_code == 1 and result.output.startswith(message), result.output
