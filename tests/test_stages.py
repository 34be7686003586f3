"""The stage table: one signature, records, and completeness from the inputs as they are now."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from sgc.compute import Compute
from sgc.config import ConfigError, load_config
from sgc.cube.store import ATTR_RAW_DIR, LABEL, CubeStore
from sgc.stages import STAGES, context, pretrain_config, read_record, recipe_config, run_stage, train_settings
from tests.patches.synthetic import build_store, random_field, tan_header

FIELDS = ("009001-3-0011", "009001-3-0012", "009001-3-0013")
SHAPE = (64, 96)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """Three labelled fields far apart on the sky, the third held out (its footprint: its stored grid)."""
    rng = np.random.default_rng(1)
    fields = {name: random_field(rng, SHAPE, tan_header(SHAPE, ra=150 + k)) for k, name in enumerate(FIELDS)}
    return build_store(tmp_path / "run.zarr", fields)


def _config(tmp_path: Path, *overrides: str):
    base = [
        f"test_fields=[{FIELDS[2]}]",
        f"runs_dir={tmp_path / 'runs'}",
        f"exclude.footprint_sources=[{tmp_path}]",
        "split.patch=16",
        "split.stride=16",
        f"split.train_fields=[{FIELDS[0]}]",
        f"split.val_fields=[{FIELDS[1]}]",
    ]
    return load_config(None, [*base, *overrides])


def test_a_stage_records_its_result_and_is_complete_until_its_inputs_change(
    store: Path, tmp_path: Path
) -> None:
    cfg = _config(tmp_path)
    with Compute(cfg.compute) as compute:
        ctx = context(cfg, compute, store)
        assert ctx.paths.plan == tmp_path / "run" / "plan.zarr"  # beside the store, as sgc run puts it
        assert not STAGES["split"].is_complete(ctx)
        result = run_stage(STAGES["split"], ctx)
        assert result.ok and result.summary.startswith(f"{ctx.paths.plan}: patches train 24, val 24, test 24")
        record = read_record(ctx.paths, "split")
        assert (
            record["ok"]
            and record["summary"] == result.summary
            and record["record"]["plan"] == str(ctx.paths.plan)
        )
        json.dumps(record)  # plain JSON
        assert STAGES["split"].is_complete(ctx)
        audit = run_stage(STAGES["audit"], ctx)
        assert audit.ok and STAGES["audit"].is_complete(ctx)

        # Another setting of the stage itself: the split must be made again, the audit still holds.
        reseeded = context(_config(tmp_path, "split.seed=4"), compute, store)
        assert not STAGES["split"].is_complete(reseeded) and STAGES["audit"].is_complete(reseeded)

        # An upstream output that changed (the labels redone with other settings): split, then audit.
        CubeStore.open(store, "r+")[LABEL].attrs["settings"] = {"mode": "point"}
        assert not STAGES["split"].is_complete(ctx)
        run_stage(STAGES["split"], ctx)
        assert STAGES["split"].is_complete(ctx)
        # The plan came out the same (the labels' pixels did not change), so the audit of it still holds.
        assert STAGES["audit"].is_complete(ctx)

        # An output removed behind the run's back.
        shutil.rmtree(ctx.paths.plan)
        assert not STAGES["split"].is_complete(ctx) and not STAGES["audit"].is_complete(ctx)


def test_a_failed_stage_is_recorded_as_not_complete(store: Path, tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    with Compute(cfg.compute) as compute:
        ctx = context(cfg, compute, store)
        run_stage(STAGES["split"], ctx)
        from sgc.patches.planfile import read_plan, write_plan

        plan = read_plan(ctx.paths.plan)
        plan.table["split"][0] = "train"
        plan.table["y0"][0], plan.table["x0"][0] = 0, 0
        plan.table["field"][0], plan.table["field_index"][0] = FIELDS[2], 2  # a train patch on held-out sky
        write_plan(plan, ctx.paths.plan)
        result = run_stage(STAGES["audit"], ctx)
        assert not result.ok and "LEAK" in result.summary
        assert read_record(ctx.paths, "audit")["ok"] is False
        assert not STAGES["audit"].is_complete(ctx)


def test_stage_commands_read_the_raw_folder_the_store_records(store: Path, tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    CubeStore.open(store, "r+").attrs[ATTR_RAW_DIR] = str(tmp_path / "raw-elsewhere")
    with Compute(cfg.compute) as compute:
        assert context(cfg, compute, store).paths.raw == tmp_path / "raw-elsewhere"
        given = context(cfg, compute, store, raw=tmp_path / "mine")
        assert given.paths.raw == tmp_path / "mine"
        explicit = _config(tmp_path, f"raw_dir={tmp_path / 'configured'}")
        assert context(explicit, compute, store).paths.raw == tmp_path / "configured"


def test_the_2023_recipe_changes_labels_and_training_only(tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("label: {mode: point}\ntrain: {epochs: 2}\n")
    cfg = _config(tmp_path, f"baselines.reference={recipe}", "baselines.reference_set=[train.lr=0.01]")
    with Compute(cfg.compute) as compute:
        ctx = context(cfg, compute)
        sub = recipe_config(ctx)
        assert (sub.name, sub.label.mode, sub.train.epochs, sub.train.lr) == ("sgc-recipe", "point", 2, 0.01)
        assert sub.split == cfg.split and sub.test_fields == cfg.test_fields
        assert sub.baselines.reference is None and sub.paths.store != cfg.paths.store
        # Neither the file nor the overrides may touch the data or the split.
        for data, given in (("split: {patch: 32}\n", []), ("train: {epochs: 2}\n", ["split.patch=32"])):
            recipe.write_text(data)
            ctx.cfg = cfg.model_copy(
                update={"baselines": cfg.baselines.model_copy(update={"reference_set": given})}
            )
            with pytest.raises(ConfigError, match="a recipe sets only label, train, not split"):
                recipe_config(ctx)


def test_pretraining_trains_this_runs_model_and_starts_its_training(tmp_path: Path) -> None:
    pre = tmp_path / "pre.yaml"
    pre.write_text(
        "name: pre\nsource: simulate\ntest_fields: ['009001-3-0099']\nsimulate: {fields: 2}\n"
        "train: {epochs: 3, model: {width: 64}}\n"
    )
    cfg = _config(tmp_path, f"pretrain.config={pre}", "pretrain.set=[simulate.seed=5]", "train.model.width=8")
    with Compute(cfg.compute) as compute:
        ctx = context(cfg, compute)
        sub = pretrain_config(cfg)
        # Its own data and schedule; this run's model, held-out fields, folders and client.
        assert (sub.name, sub.source, sub.simulate.seed, sub.train.epochs) == ("pre", "simulate", 5, 3)
        assert sub.train.model == cfg.train.model and sub.pretrain.config is None
        assert sub.test_fields == sorted(["009001-3-0099", *cfg.test_fields])
        assert sub.workdir == cfg.workdir and sub.runs_dir == cfg.runs_dir
        assert train_settings(ctx).init == sub.paths.checkpoint
        # The train stage depends on the pretrained weights: pretrained again, trained again.
        sub.paths.checkpoint.parent.mkdir(parents=True)
        sub.paths.checkpoint.write_bytes(b"weights")
        before = STAGES["train"].fingerprint(ctx)
        sub.paths.checkpoint.write_bytes(b"other weights")
        assert STAGES["train"].fingerprint(ctx) != before
        # The 2023 recipe is trained from scratch, as in 2023.
        recipe = tmp_path / "recipe.yaml"
        recipe.write_text("train: {epochs: 2}\n")
        ctx.cfg = ctx.cfg.model_copy(
            update={"baselines": cfg.baselines.model_copy(update={"reference": recipe})}
        )
        assert recipe_config(ctx).pretrain.config is None
    assert train_settings(context(_config(tmp_path), compute)).init is None
