"""The one Dask client of a run: started on first use, used by every stage inside ``stage()``, closed at the
end, and logging left as it was."""

from __future__ import annotations

import logging
import os

import dask

from sgc.compute import Compute
from sgc.config import ComputeConfig


def test_client_starts_on_first_use_serves_each_stage_and_closes() -> None:
    import distributed  # noqa: F401 - its import configures its own loggers; the session must not

    environment = dict(os.environ)
    distributed_logger = logging.getLogger("distributed")
    level, handlers = distributed_logger.level, [(h, h.level) for h in distributed_logger.handlers]
    with Compute(ComputeConfig(workers=1)) as compute:
        assert compute._client is None  # nothing started for a run whose stages need no Dask
        with compute.stage("label") as client:
            # Tasks run in the worker process, not here, and are annotated with the stage's name.
            (pid,) = dask.compute(dask.delayed(os.getpid)())
            assert pid != os.getpid()
            assert len(client.scheduler_info()["workers"]) == 1
            assert dask.get_annotations() == {"sgc_stage": "label"}
            assert "OMP_NUM_THREADS" not in os.environ or os.environ["OMP_NUM_THREADS"] == environment.get(
                "OMP_NUM_THREADS"
            )
        assert compute.client() is client  # one client for the whole run
    assert client.status == "closed"
    (pid,) = dask.compute(dask.delayed(os.getpid)())
    assert pid == os.getpid()  # outside a stage, dask is as it was
    assert distributed_logger.level == level
    assert dict(os.environ) == environment  # no OMP_NUM_THREADS=1 left behind for torch to find
    assert [(h, h.level) for h in distributed_logger.handlers] == handlers
