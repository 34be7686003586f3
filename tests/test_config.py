"""Config loading, validation, command-line overrides and saving."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from sgc.config import ConfigError, RunConfig, apply_overrides, config_digest, load_config, save_config

REPO = Path(__file__).resolve().parents[1]


def test_one_set_of_defaults(tmp_path: Path) -> None:
    only_name = tmp_path / "only-name.yaml"
    only_name.write_text("name: sgc\n")
    assert RunConfig() == load_config() == load_config(only_name)
    cfg = RunConfig()
    assert cfg.test_fields == ["008162-6-0080"]  # the canonical test field, for real data
    assert cfg.train.epochs == 30 and cfg.train.model.width == 32 and cfg.train.model.depth == 4
    paths = cfg.paths
    assert (paths.store, paths.out_dir, paths.raw) == (
        Path("stores/sgc.zarr"),
        Path("stores/sgc"),
        Path("stores/sgc/raw"),
    )
    assert (paths.plan, paths.plan_report, paths.run) == (
        Path("stores/sgc/plan.zarr"),
        Path("stores/sgc/plan-report"),
        Path("runs/sgc"),
    )


def test_paths_around_a_store_are_those_sgc_run_uses() -> None:
    cfg = load_config(REPO / "configs" / "demo.yaml")
    assert cfg.paths_for_store(cfg.paths.store) == cfg.paths
    other = cfg.paths_for_store("elsewhere/x.zarr")
    assert (other.plan, other.stats, other.run) == (
        Path("elsewhere/x/plan.zarr"),
        Path("elsewhere/x/stats"),
        Path("runs/x"),
    )


@pytest.mark.parametrize("name", ["demo", "sample", "dr17"])
def test_shipped_configs_load(name: str) -> None:
    cfg = load_config(REPO / "configs" / f"{name}.yaml")
    assert cfg.name == name


def test_demo_test_field_is_the_middle_simulated_field() -> None:
    from sgc.sdss.names import FieldId
    from sgc.sim.simulate import DEFAULT_CAMCOL, DEFAULT_START_FIELD, FIRST_RUN

    demo = load_config(REPO / "configs" / "demo.yaml")
    assert demo.test_fields == [str(FieldId(FIRST_RUN, DEFAULT_CAMCOL, DEFAULT_START_FIELD + 1))]


# Every rule that ties settings together, with a value breaking it and the key the refusal must name.
CROSS_FIELD_RULES = [
    (["label.min_radius_px=30", "label.max_radius_px=5"], "label.min_radius_px"),
    (["split.row_fractions=[0.9, 0.9, 0.9]"], "split.row_fractions"),
    (
        ["split.train_fields=[9001-3-11]", "split.val_fields=[9001-3-11]"],
        "split.train_fields and split.val_fields",
    ),
    (["test_fields=[9001-3-12]", "split.val_fields=[9001-3-12]"], "split.val_fields lists the held-out"),
    (["split.patch=36"], "split.patch (36) must be a multiple of 2**train.model.depth"),
    (["split.patch=128", "ingest.chunk=64"], "split.patch (128) is larger than ingest.chunk (64)"),
    (["source=sdss", "download.fields=[]"], "download.fields"),
    (["predict.tile=100"], "predict.tile (100) leaves no inside to a tile"),
    (["evaluate.split=val"], "evaluate.split (val) is not among predict.splits"),
    (["explain.field=9001-3-11"], "explain.field and explain.box go together"),
]


@pytest.mark.parametrize(("overrides", "named"), CROSS_FIELD_RULES)
def test_cross_field_rules_refuse_a_config_naming_the_key(overrides: list[str], named: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(named)):
        load_config(REPO / "configs" / "demo.yaml", overrides)


def test_dr17_config_lists_the_twelve_published_fields_with_the_test_field() -> None:
    cfg = load_config(REPO / "configs" / "dr17.yaml")
    assert len(cfg.download.fields) == 12
    assert "008162-6-0080" in cfg.download.fields


def test_overrides_reach_nested_fields_and_parse_yaml_values() -> None:
    cfg = load_config(
        REPO / "configs" / "demo.yaml",
        ["simulate.fields=8", "download.catalogs=false", "test_fields=[1-1-1, 8162-6-80]", "name=other"],
    )
    assert cfg.simulate.fields == 8
    assert cfg.download.catalogs is False
    assert cfg.test_fields == ["000001-1-0001", "008162-6-0080"]
    assert cfg.name == "other"


def test_apply_overrides_leaves_its_input_alone() -> None:
    data = {"simulate": {"fields": 3}}
    assert apply_overrides(data, ["simulate.seed=4"]) == {"simulate": {"fields": 3, "seed": 4}}
    assert data == {"simulate": {"fields": 3}}


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("simulate.feilds=3", "simulate.feilds: Extra inputs"),
        ("simulate.fields=0", "simulate.fields"),
        ("simulate.fields=three", "simulate.fields"),
        ("test_fields=[8162-9-80]", "test_fields"),
        ("nonsense", "dotted.key=value"),
        ("name.sub=1", "'name' is not a section"),
    ],
)
def test_bad_overrides_are_named(override: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_config(REPO / "configs" / "demo.yaml", [override])


def test_bad_files_are_named(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError, match="missing.yaml: config file does not exist"):
        load_config(missing)
    bad = tmp_path / "bad.yaml"
    bad.write_text("simulate: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(bad)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="wrong.yaml: expected a mapping"):
        load_config(wrong)


def test_saved_config_loads_back_identical(tmp_path: Path) -> None:
    cfg = load_config(REPO / "configs" / "demo.yaml", ["simulate.fields=5", "download.jobs=2"])
    path = save_config(cfg, tmp_path / "out", "run")
    assert path.name == "sgc-run.yaml"
    again = RunConfig.model_validate(yaml.safe_load(path.read_text()))
    assert again == cfg
    assert config_digest(again) == config_digest(cfg)
    assert config_digest(cfg.model_copy(update={"name": "x"})) != config_digest(cfg)
