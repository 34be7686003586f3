"""``sgc run`` end to end: the offline demo on a two-worker Dask cluster (same outputs as before the stage
table was introduced, every Dask stage on that cluster, a rerun skipping everything), and the real sample."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from collections import Counter
from pathlib import Path

import pytest
import torch
from distributed.diagnostics.plugin import SchedulerPlugin
from typer.testing import CliRunner

from sgc.cli import app
from sgc.compute import SINGLE_THREAD_ENV, STAGE_ANNOTATION
from sgc.config import load_config
from sgc.patches.planfile import read_plan
from sgc.sdss.discover import find_raw
from sgc.stages import STAGES
from tests.browser import check_page
from tests.digests import differences, plan_digest, store_digest

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


class StageTasks(SchedulerPlugin):
    """Counts the tasks a scheduler finished, by the stage their annotation names."""

    def __init__(self) -> None:
        self.scheduler = None
        self.counts: Counter[str] = Counter()

    def transition(self, key: str, start: str, finish: str, *args: object, **kwargs: object) -> None:
        if finish == "memory":
            task = self.scheduler.tasks.get(key)
            self.counts[str((task.annotations or {}).get(STAGE_ANNOTATION))] += 1


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(("sgc-", ".sgc-"))
    }


def _overrides(work: Path) -> list[str]:
    return ["--set", f"workdir={work}", "--set", f"runs_dir={work / 'runs'}"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Counter[str], str]:
    """``sgc run configs/demo.yaml`` as shipped, on a running two-worker cluster; its folder, the tasks the
    scheduler finished per stage, and the output."""
    from dask.distributed import LocalCluster

    work = tmp_path_factory.mktemp("work")
    # The digests were recorded by a run whose training used one thread (distributed's worker environment
    # leaked into it then); the same thread count gives the same arithmetic, so the same first epoch.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", env=SINGLE_THREAD_ENV
    ) as cluster:
        tasks = StageTasks()
        tasks.scheduler = cluster.scheduler
        cluster.scheduler.add_plugin(tasks)
        args = ["run", str(REPO / "configs/demo.yaml"), "--scheduler", cluster.scheduler_address]
        result = runner.invoke(app, [*args, *_overrides(work)])
    torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    return work, tasks.counts, result.output


@pytest.mark.slow
def test_demo_downloads_the_simulated_mirror_byte_for_byte(demo_run) -> None:
    work = demo_run[0] / "demo"
    mirror, raw = work / "mirror", work / "raw"
    assert _digests(raw) == _digests(mirror)
    inv = find_raw(raw)
    assert len(inv.complete) == 3 and not inv.incomplete
    assert len(inv.catalogs) == 2  # calibObj star and gal of the one run+camcol
    for path in ("sgc-run.yaml", "stats/stats.json", "plan.zarr", "plan-report/patch_grid.png"):
        assert (work / path).exists(), path
    assert (demo_run[0] / "runs" / "demo" / "best.pt").is_file()


@pytest.mark.slow
def test_demo_outputs_equal_those_recorded(demo_run) -> None:
    """The store's arrays, the plan and training's first epoch, against digests recorded before
    (``tests/demo_digests.json``): first before configuration, stages and compute were consolidated, again
    when the simulator was made more realistic. A change meant to alter them records them anew (saying why
    in its commit) with ``SGC_RECORD_DIGESTS=1 python -m pytest tests/test_pipeline.py -k recorded``."""
    work = demo_run[0]
    path = REPO / "tests" / "demo_digests.json"
    with (work / "runs" / "demo" / "metrics.csv").open() as f:
        first_epoch = next(csv.DictReader(f))
    now = {"store": store_digest(work / "demo.zarr"), "plan": plan_digest(work / "demo" / "plan.zarr")}
    if os.environ.get("SGC_RECORD_DIGESTS"):
        loss = float(first_epoch["train_loss"])
        path.write_text(json.dumps({**now, "first_epoch_train_loss": loss}, indent=1) + "\n")
        pytest.skip(f"recorded {path}")
    recorded = json.loads(path.read_text())
    assert differences({key: recorded[key] for key in now}, now) == []
    # Another CPU's vector units may sum in another order: equal to well within what any change of data,
    # order, weights or loss moves it (a different update moved it by 5-7% in the DDP test).
    assert float(first_epoch["train_loss"]) == pytest.approx(recorded["first_epoch_train_loss"], rel=1e-4)


@pytest.mark.slow
def test_every_dask_stage_ran_on_the_scheduler_given(demo_run) -> None:
    _, tasks, output = demo_run
    for stage in ("ingest", "stats", "label", "exclude", "split", "audit", "predict"):
        assert tasks[stage] > 0, (stage, dict(tasks))
    assert tasks["ingest"] == 6  # one task per field, into the run's store and into the 2023 recipe's
    # For sgc and the 2023 recipe: the test field in 3 x 4 blocks of 2 x 2 chunks, then its objects.
    assert tasks["predict"] == 2 * (12 + 1)
    assert "dask: scheduler tcp://" in output


@pytest.mark.slow
def test_rerun_skips_every_stage_and_touches_nothing(demo_run) -> None:
    work = demo_run[0]
    before = {
        p: p.stat().st_mtime_ns for p in work.rglob("*") if p.is_file() and "sgc-run.yaml" not in p.name
    }
    result = runner.invoke(app, ["run", str(REPO / "configs/demo.yaml"), *_overrides(work)])
    assert result.exit_code == 0, result.output
    cfg = load_config(REPO / "configs/demo.yaml")
    for name, stage in STAGES.items():
        shown = re.search(rf"^{name}: complete, skipped$", result.output, re.M)
        assert bool(shown) == stage.applies(cfg), name  # the demo pretrains nothing
    after = {p: p.stat().st_mtime_ns for p in work.rglob("*") if p.is_file() and "sgc-run.yaml" not in p.name}
    assert after == before
    assert "dask:" not in result.output  # nothing to compute: no cluster started


@pytest.mark.slow
def test_demo_ends_with_predictions_scores_and_a_report_that_opens_in_chromium(demo_run) -> None:
    work, _, output = demo_run
    page = work / "demo" / "report" / "index.html"
    assert f"report: {page}" in output
    assert re.search(r"^sgc: \d+ objects, detection recall [01]\.\d{3}, accuracy", output, re.M)
    assert re.search(r"^2023 recipe: .*\nclassical: ", output, re.M)
    for path in ("predictions/predictions.zarr", "predictions/objects.fits", "evaluate/metrics.json"):
        assert (work / "demo" / path).exists(), path
    metrics = json.loads((work / "demo" / "evaluate" / "metrics.json").read_text())
    assert {"pixel", "per_patch", "object"} <= set(metrics) and metrics["region"]["fields"] == [
        "009001-3-0012"
    ]
    check = check_page(page)
    assert check.console_errors == [] and check.broken_images == [] and check.empty_tables == 0
    assert check.images >= 10 and check.tables >= 6


@pytest.mark.slow
def test_dr17_runs_against_a_mirror_serving_simulated_fields_under_its_names(tmp_path: Path) -> None:
    """The twelve fields of the 2023 report, simulated small under their real names and served over HTTP."""
    from sgc.sdss.mirror import serve_directory
    from tests.sim.named import simulate_named

    cfg = load_config(REPO / "configs" / "dr17.yaml")
    assert len(cfg.download.fields) == 12 and cfg.test_fields == ["008162-6-0080"]
    assert len(cfg.split.train_fields) == 9 and len(cfg.split.val_fields) == 2
    mirror = tmp_path / "mirror"
    simulate_named(mirror, cfg.download.fields, seed=4, shape=(300, 400))
    quick = ["train.epochs=1", "train.max_steps=2", "train.model.width=8", "train.loader.batch_size=8"]
    with serve_directory(mirror) as url:
        args = [
            "run",
            str(REPO / "configs" / "dr17.yaml"),
            "--set",
            f"download.base_url={url}",
            "--workers",
            "2",
        ]
        args += [arg for setting in quick for arg in ("--set", setting)]
        args += ["--set", f"baselines.reference_set=[{', '.join(quick)}]"]
        result = runner.invoke(app, [*args, *_overrides(tmp_path / "work")])
    assert result.exit_code == 0, result.output
    assert "12 field(s) stored" in result.output
    plan = read_plan(tmp_path / "work" / "dr17" / "plan.zarr")
    assert plan.split["assignment"]["fields"]["test"] == ["008162-6-0080"]
    assert sorted(plan.split["assignment"]["fields"]["val"]) == ["003918-3-0213", "007264-3-0111"]
    assert (tmp_path / "work" / "dr17" / "report" / "index.html").is_file()
    assert re.search(r"^classical: \d+ objects", result.output, re.M)


@pytest.mark.slow
def test_sample_config_runs_every_stage_on_the_real_sample(sdss_dir: Path, tmp_path: Path) -> None:
    # The recipe as shipped, with less of it: 15 epochs, pretrained for one epoch on two simulated fields.
    pretrain = ["simulate.fields=2", "train.epochs=1", f"exclude.footprint_sources=[{sdss_dir / 'headers'}]"]
    result = runner.invoke(
        app,
        [
            "run",
            str(REPO / "configs" / "sample.yaml"),
            *_overrides(tmp_path),
            "--set",
            "train.epochs=15",
            "--set",
            f"pretrain.set={json.dumps(pretrain)}",
            "--set",
            f"raw_dir={sdss_dir / '003918-3-0213'}",
            "--set",
            f"exclude.footprint_sources=[{sdss_dir / 'headers'}]",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "1 field(s) with all five bands, 1 catalogue file(s)" in result.output
    assert "137 stars, 181 galaxies" in result.output  # one star lies past the i grid's 745 rows
    assert "OK, no patch touches held-out sky" in result.output
    assert "configs/pretrain.yaml pretrained into" in result.output
    for path in (
        "sample.zarr",
        "sample/stats/stats.json",
        "sample/plan.zarr",
        "sample/plan-report/patch_grid.png",
        "pretrain.zarr",
        "runs/pretrain/best.pt",
        "runs/sample/best.pt",
        "sample/report/index.html",
    ):
        assert (tmp_path / path).exists(), path
    plan = read_plan(tmp_path / "sample" / "plan.zarr")
    assert {s: v["kept"] for s, v in plan.summary.items()} == {"train": 248, "val": 0, "test": 31}
    # The U-Net learns the sky from the 248 train patches: on the 34 objects of the test rows it finds and
    # classifies most, far beyond the 2023 recipe trained on the same rows.
    found = json.loads((tmp_path / "sample" / "evaluate" / "summary.json").read_text())["object"]
    assert found["sgc"]["n"] == 34
    assert found["sgc"]["detection_recall"] > 0.6 and found["sgc"]["accuracy"] > 0.5
    assert found["sgc"]["mcc"] > found["2023 recipe"]["mcc"] + 0.2
    # Every object of the test rows has a magnitude (the catalogue has none: fibre magnitudes), so every
    # object is in a bin of the scores by magnitude.
    metrics = json.loads((tmp_path / "sample" / "evaluate" / "metrics.json").read_text())["object"]
    assert sum(b["n"] for b in metrics["by_magnitude"]) == 34
