"""Where ``sgc tune`` writes, beside the run's other outputs: ``workdir/NAME/tune/``.

Kept apart from the search itself (and free of Optuna) so that the HTML report can find the figures and
the summary of a search without importing the search.
"""

from __future__ import annotations

from pathlib import Path

TUNE_FOLDER = "tune"
# The study: Optuna's append-only journal, which every trial process writes to and a resumed search reads.
JOURNAL = "study.journal"
# The search space the study was made with, as read (a resumed search must use the same one).
SPACE_YAML = "space.yaml"
TRIALS_CSV = "trials.csv"
TRIALS_MD = "trials.md"
# The best trial's configuration: the base config's settings with its parameters merged in.
BEST_YAML = "best.yaml"
SUMMARY_JSON = "summary.json"
HISTORY_PNG = "history.png"
IMPORTANCE_PNG = "importance.png"
# Each trial's own store, outputs and stage records (``trials/trial-NNNN``).
TRIALS_FOLDER = "trials"


def tune_dir(out_dir: Path) -> Path:
    """The folder of a run's search: ``out_dir/tune`` (``stores/NAME/tune``)."""
    return Path(out_dir) / TUNE_FOLDER


def trial_name(number: int) -> str:
    """The name of trial ``number``'s run: ``trial-NNNN``, which names its store and output folders."""
    return f"trial-{number:04d}"
