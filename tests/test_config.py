"""Config loading, validation, command-line overrides and saving."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sgc.config import ConfigError, RunConfig, apply_overrides, config_digest, load_config, save_config

REPO = Path(__file__).resolve().parents[1]


def test_defaults_are_the_offline_demo() -> None:
    cfg = load_config()
    assert cfg.source == "simulate"
    assert cfg.test_fields == ["009001-3-0012"]
    assert RunConfig().test_fields == ["008162-6-0080"]  # the canonical test field, for real data
    assert cfg.out_dir == Path("stores/demo")
    assert cfg.resolved_raw_dir == Path("stores/demo/raw")


@pytest.mark.parametrize("name", ["demo", "sample", "dr17"])
def test_shipped_configs_load(name: str) -> None:
    cfg = load_config(REPO / "configs" / f"{name}.yaml")
    assert cfg.name == name


def test_demo_config_spells_out_the_defaults() -> None:
    assert load_config(REPO / "configs" / "demo.yaml") == load_config()


def test_demo_test_field_is_the_middle_simulated_field() -> None:
    from sgc.sdss.names import FieldId
    from sgc.sdss.simulate import DEFAULT_CAMCOL, DEFAULT_START_FIELD, FIRST_RUN

    assert load_config().test_fields == [str(FieldId(FIRST_RUN, DEFAULT_CAMCOL, DEFAULT_START_FIELD + 1))]


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
    cfg = load_config(None, ["simulate.fields=5", "download.jobs=2"])
    path = save_config(cfg, tmp_path / "out", "run")
    assert path.name == "sgc-run.yaml"
    again = RunConfig.model_validate(yaml.safe_load(path.read_text()))
    assert again == cfg
    assert config_digest(again) == config_digest(cfg)
    assert config_digest(load_config(None, ["simulate.seed=1"])) != config_digest(cfg)
