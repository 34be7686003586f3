"""A trial's config: its own folders, and the run's pretrained weights instead of a pretraining of its own."""

from __future__ import annotations

from pathlib import Path

from sgc.config import load_config
from sgc.tune.trial import trial_settings


def test_trials_start_from_the_runs_pretrained_weights(tmp_path: Path) -> None:
    pre = tmp_path / "pre.yaml"
    pre.write_text("name: pre\nsource: simulate\n")
    base = [f"workdir={tmp_path}", f"runs_dir={tmp_path / 'runs'}"]
    cfg = load_config(None, [*base, f"pretrain.config={pre}"])
    data = trial_settings(cfg, {"train.lr": 0.001}, 3)
    # Pretrained once by the search (its prepare), where sgc run would: a trial runs in a worker process.
    assert data["pretrain"]["config"] is None
    assert data["train"]["init"] == str((tmp_path / "runs" / "pre" / "best.pt").resolve())
    assert data["train"]["lr"] == 0.001 and data["name"] == "trial-0003"
    assert trial_settings(load_config(None, base), {}, 3)["train"]["init"] is None
