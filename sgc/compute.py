"""The one owner of the Dask client: every Dask stage of a run computes on it.

A run enters one :class:`Compute` (``sgc run`` for all its stages, a stage command for its one). The
client starts on first use, on a running scheduler (``compute.scheduler``, ``--scheduler tcp://host:8786``)
or on a local cluster of ``compute.workers`` single-threaded processes, and closes when the run ends.
:meth:`Compute.stage` makes it the scheduler of every ``dask.compute`` inside, for that stage only, and
annotates the stage's tasks with its name (``sgc_stage``), which the dashboard and the tests read.

Logging and the environment are left as they are: the local cluster quiets distributed's own stream
handlers while it runs (its ``silence_logs``) and puts them back when it closes, and the variables that
distributed writes into this process's environment to pass on to its workers (``OMP_NUM_THREADS=1`` and the
like, its ``pre-spawn-environ``) are taken back once the workers have started: left there, they made every
later torch operation of the run, the training above all, use a single thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import dask

from sgc.config import ComputeConfig

if TYPE_CHECKING:
    from dask.distributed import Client

log = logging.getLogger(__name__)

# Environment for worker processes: numba, OpenMP and BLAS threads capped so that N workers use N cores.
SINGLE_THREAD_ENV = {
    "NUMBA_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
STAGE_ANNOTATION = "sgc_stage"


class Compute:
    """The Dask client of one run, started on first use and closed with the run.

    Args:
        cfg: where to compute: a scheduler address, or the number of local worker processes.
    """

    def __init__(self, cfg: ComputeConfig) -> None:
        self.cfg = cfg
        self._stack = contextlib.ExitStack()
        self._client: Any | None = None

    def __enter__(self) -> Compute:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the client (and the local cluster) if one was started."""
        self._client = None
        self._stack.close()

    def client(self) -> Any:
        """The ``dask.distributed`` client, started now if it was not yet."""
        if self._client is None:
            self._client = self._stack.enter_context(self._start())
        return self._client

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[Any]:
        """Within the block, ``dask.compute`` runs on this run's client, its tasks annotated with ``name``.

        Yields:
            The client, for stages that submit tasks themselves.
        """
        client = self.client()
        with (
            client.as_current(),
            dask.config.set(scheduler="dask.distributed"),
            dask.annotate(**{STAGE_ANNOTATION: name}),
        ):
            yield client

    @contextlib.contextmanager
    def _start(self) -> Iterator[Any]:
        from dask.distributed import Client, LocalCluster

        if self.cfg.scheduler:
            with Client(self.cfg.scheduler, set_as_default=False) as client:
                log.info("dask: scheduler %s, dashboard %s", self.cfg.scheduler, client.dashboard_link)
                yield client
            return
        # distributed sets MALLOC_TRIM_THRESHOLD_ in workers, which turns off glibc's adaptive mmap threshold:
        # every 12 MB frame buffer is then mapped afresh and page-faulted, 11% slower per field (measured).
        # Memory stays flat without it, since each field frees what it allocated before the next one starts.
        if self.cfg.workers == 0:
            # In this process: where the run is itself a task of a Dask worker (a trial of sgc tune), whose
            # daemonic process may start no worker processes of its own.
            with (
                LocalCluster(
                    n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0"
                ) as cluster,
                Client(cluster, set_as_default=False) as client,
            ):
                log.info("dask: in this process")
                _quiet_task_failures(client)
                yield client
            return
        with (
            dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}),
            _environment_kept(),
        ):
            cluster = LocalCluster(
                n_workers=self.cfg.workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",
                env=SINGLE_THREAD_ENV,
                silence_logs=logging.INFO if log.isEnabledFor(logging.DEBUG) else logging.ERROR,
            )
        with cluster, Client(cluster, set_as_default=False) as client:
            log.info("dask: %d local worker(s), dashboard %s", self.cfg.workers, client.dashboard_link)
            _quiet_task_failures(client)
            yield client


def _quiet_task_failures(client: Client) -> None:
    """Keep the workers sgc starts from logging each failed task's traceback: the failure reaches sgc, which
    reports it in one line (and the traceback is what ``--verbose`` is for)."""
    if not log.isEnabledFor(logging.DEBUG):
        client.run(_silence_worker_log)


def _silence_worker_log() -> None:
    logging.getLogger("distributed.worker").setLevel(logging.CRITICAL)


@contextlib.contextmanager
def _environment_kept() -> Iterator[None]:
    """Put this process's environment back as it was on leaving the block."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
