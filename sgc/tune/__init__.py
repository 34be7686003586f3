"""``sgc tune``: a hyper-parameter search with Optuna whose trials run on the run's Dask cluster.

The search is split so that each part can be tested alone:

- :mod:`sgc.tune.space`: the search space, a YAML file of dotted config keys and their distributions (the
  config schema forbids unknown keys, so it cannot live in the run's config), checked against the config
  when it is read.
- :mod:`sgc.tune.objective`: what a trial measures. The command line scores a trial by K-fold
  cross-validation (:func:`sgc.cv.cross_validate`): the mean over folds of one object metric of one method.
  The library takes any picklable callable instead, which is how the tests drive the real cluster with a
  cheap objective.
- :mod:`sgc.tune.trial`: one trial, as a task on a Dask worker: it opens the study's storage itself, so that
  each fold's running mean reaches the pruner of every other process, and it records its own result.
- :mod:`sgc.tune.search`: the driver in the ``sgc tune`` process: it asks the study for trials, keeps as
  many in flight as the cluster has workers, and on resume re-runs the trials a killed search left running.
- :mod:`sgc.tune.results`: the trials table, the best configuration as a config file, and the figures.
- :mod:`sgc.tune.files`: where those outputs are (read by the HTML report without importing Optuna).
"""

from sgc.errors import SgcError


class TuneError(SgcError, ValueError):
    """A search that cannot be run as asked (its options, or a folder holding another search)."""
