"""The whole pipeline as the work grows: seconds, memory, store bytes and scheduler traffic per field.

A run of N simulated fields (one SDSS run, consecutive fields overlapping by 128 rows) goes through the
stages of ``sgc run`` (simulate, download, ingest, stats, label, exclude, split, audit, a short training,
prediction of the held-out fields) on a local two-worker ``distributed.LocalCluster``, which the run reaches
as ``compute.scheduler``, as a real cluster would be. How the work grows is measured honestly by growing it:

1. the N fields are simulated once (the mirror stands for SDSS; the simulation is timed, but it is not a
   survey stage);
2. the fields are then given to the run in four appends of a quarter each (``download.fields`` lists the
   first append, then the first half, ...), and ``sgc run``'s stages run after each append, each skipping
   what is complete, exactly as a survey that grows would rerun them;
3. after each append the whole run is run once more, which must do nothing (every stage skipped): its cost
   is what ``sgc run`` pays to find out that nothing is left to do.

For each stage and append this records the wall time, divided by the fields the stage worked on: the new
fields for stages that only add (download, ingest, exclude), every stored field for stages that go over all
of them (stats, label, split, audit), the held-out fields stored for predict; training runs a fixed number
of steps and is reported in seconds. It also records the time per new field (what the append cost), the peak
resident memory of the two workers and of this process (sampled every 0.2 s), the store's bytes per field,
and the scheduler's work: tasks computed, graphs submitted and client messages (stream messages from
clients other than heartbeats, and gather calls), counted by a plugin on the scheduler.

The flatness figures compare the first append (a quarter of the fields) with the last (the fourth).

    python bench/scale.py --fields 200 [--workdir stores/bench-scale]
    python bench/scale.py --quick          # 2 fields in 2 appends: the smoke run of run_all.py --quick
    python bench/scale.py --summarise bench/results/scale.json   # rebuild the summary of a saved run

Saves ``bench/results/scale.json`` (``scale-quick.json`` with ``--quick``), whose ``"summary"`` holds the
rows of ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import json
import logging
import os
import shutil
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dask
import psutil
from distributed import Client, LocalCluster
from distributed.diagnostics.plugin import SchedulerPlugin

from sgc.compute import SINGLE_THREAD_ENV, Compute
from sgc.config import RunConfig, validate_config
from sgc.cube.store import CubeStore
from sgc.stages import STAGES, StageContext, run_stages

try:
    from timing import figure, machine
except ImportError:  # imported as bench.scale (tests)
    from bench.timing import figure, machine

HERE = Path(__file__).resolve().parent
# The stages of the growing run, in order; simulate runs once before the appends.
STAGE_NAMES = ("download", "ingest", "stats", "label", "exclude", "split", "audit", "train", "predict")
# What each stage's seconds are divided by: "new" fields of the append, "all" stored fields, the "test"
# fields stored (predicted), or nothing ("run": a fixed number of training steps).
UNITS = {
    "download": "new",
    "ingest": "new",
    "stats": "all",
    "label": "all",
    "exclude": "new",
    "split": "all",
    "audit": "all",
    "train": "run",
    "predict": "test",
}
# The stream messages a client sends the scheduler (distributed's Scheduler.__init__, client_handlers), less
# its heartbeats, which are not the client's work.
_CLIENT_MESSAGES = (
    "update-graph",
    "client-desires-keys",
    "update-data",
    "report-key",
    "client-releases-keys",
    "close-client",
    "subscribe-topic",
    "unsubscribe-topic",
    "cancel-keys",
)
# Scheduler RPCs that a client calls to fetch or send data.
_CLIENT_RPCS = ("gather", "scatter", "who_has", "broadcast")
MB = 1 << 20

log = logging.getLogger("bench.scale")


class StageCounter(SchedulerPlugin):
    """Counts, per stage the benchmark names in :attr:`stage`, what the scheduler did for clients.

    It runs in this process (a ``LocalCluster``'s scheduler does), so the benchmark reads its counters
    directly; events are charged to the stage running when the scheduler handled them.
    """

    name = "sgc-bench-scale"

    def __init__(self) -> None:
        self.stage = "setup"
        self.counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))

    def _add(self, what: str, n: int = 1) -> None:
        self.counts[self.stage][what] += n

    def wrap(self, scheduler: Any) -> None:
        """Wrap the client message handlers and data RPCs so that each call is counted (the scheduler
        looks its handlers up on every message)."""
        for op in _CLIENT_MESSAGES:
            if op in scheduler.stream_handlers:
                scheduler.stream_handlers[op] = self._counting(
                    scheduler.stream_handlers[op], "client_messages"
                )
        for op in _CLIENT_RPCS:
            if op in scheduler.handlers:
                scheduler.handlers[op] = self._counting(scheduler.handlers[op], "client_messages")

    def _counting(self, handler: Callable[..., Any], what: str) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(handler):

            @functools.wraps(handler)
            async def counted_async(*args: Any, **kwargs: Any) -> Any:
                self._add(what)
                return await handler(*args, **kwargs)

            return counted_async

        @functools.wraps(handler)
        def counted(*args: Any, **kwargs: Any) -> Any:
            self._add(what)
            return handler(*args, **kwargs)

        return counted

    def update_graph(self, scheduler: Any, *, tasks: list, **kwargs: Any) -> None:
        """One graph submitted, with its tasks."""
        self._add("graphs")
        self._add("graph_tasks", len(tasks))

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        """A task computed."""
        if finish == "memory" and start == "processing":
            self._add("tasks")


class MemorySampler:
    """Peak resident memory of this process and of the workers, per stage, sampled in a thread."""

    def __init__(self, worker_pids: list[int], every: float = 0.2) -> None:
        self.stage = "setup"
        self.client: dict[str, float] = defaultdict(float)
        self.workers: dict[str, float] = defaultdict(float)
        self._me = psutil.Process()
        self._workers = [psutil.Process(pid) for pid in worker_pids]
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            stage = self.stage
            self.client[stage] = max(self.client[stage], self._me.memory_info().rss / MB)
            for proc in self._workers:
                try:
                    rss = proc.memory_info().rss / MB
                except psutil.Error:  # a worker restarted: its peak is lost, not the run
                    continue
                self.workers[stage] = max(self.workers[stage], rss)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_config(
    fields: int, appended: list[str], test: list[str], workdir: Path, scheduler: str, steps: int = 20
) -> RunConfig:
    """The run after an append: N fields simulated, the first ``appended`` of them given to it."""
    mirror = workdir / f"scale{fields}" / "mirror"
    data = {
        "name": f"scale{fields}",
        "workdir": str(workdir),
        "runs_dir": str(workdir / "runs"),
        "source": "simulate",
        "test_fields": test,
        "simulate": {"fields": fields, "runs": 1, "seed": 0},
        "download": {"fields": appended, "jobs": 4},
        "compute": {"scheduler": scheduler},
        # Footprints from the mirror: the held-out fields are fixed from the start, stored or not yet.
        "exclude": {"footprint_sources": [str(mirror)]},
        # No validation split: a short training has no use for it, and its pass would grow with the fields.
        "split": {"val_fraction": 0.0},
        "train": {
            "epochs": 1,
            "max_steps": steps,
            "patience": 0,
            "model": {"depth": 3, "width": 16},
            "loader": {"batch_size": 16},
        },
        "baselines": {"reference": None, "classical": False},
    }
    return validate_config(data, "bench/scale.py")


def held_out(fields: list[str]) -> list[str]:
    """The held-out fields: one in every 25 (at least one per quarter), none at the ends of the run."""
    step = max(2, min(25, len(fields) // 4))
    return fields[step // 2 :: step]


def append_sizes(n: int, count: int) -> list[int]:
    """Fields given to the run after each of ``count`` equal appends."""
    return [round(n * k / count) for k in range(1, count + 1)]


def dir_bytes(path: Path) -> int:
    """Bytes of the files below ``path``."""
    if not path.exists():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class FileCounter:
    """Counts, per stage, the folder walks and catalogue reads of this process (where stages read them).

    It wraps :func:`sgc.sdss.discover._files` (every walk of a folder for input files goes through it) and
    :func:`sgc.sdss.catalogs.read_catalog` (every catalogue file read), which their modules call by their
    global names.
    """

    def __init__(self) -> None:
        self.stage = "setup"
        self.counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))

    def install(self) -> None:
        """Wrap the two functions in their modules."""
        import sgc.sdss.catalogs as catalogs
        import sgc.sdss.discover as discover

        files, read = discover._files, catalogs.read_catalog

        def counted_files(sources: Any, missing_ok: bool) -> list[Path]:
            found = files(sources, missing_ok)
            self.counts[self.stage]["walks"] += sum(1 for s in map(Path, sources) if s.is_dir())
            self.counts[self.stage]["files_listed"] += len(found)
            return found

        def counted_read(path: Any, kind: Any = None) -> Any:
            self.counts[self.stage]["catalog_reads"] += 1
            return read(path, kind)

        discover._files, catalogs.read_catalog = counted_files, counted_read


FILES = FileCounter()


@contextmanager
def charged(stage: str, counter: StageCounter, memory: MemorySampler) -> Iterator[None]:
    """Charge scheduler events, memory peaks, walks and reads inside the block to ``stage``."""
    counter.stage = memory.stage = FILES.stage = stage
    try:
        yield
    finally:
        counter.stage = memory.stage = FILES.stage = "idle"


def run_append(
    cfg: RunConfig, key: str, counter: StageCounter, memory: MemorySampler, compute: Compute
) -> dict[str, dict[str, Any]]:
    """Run the stages once, each timed and charged to ``KEY:STAGE``."""
    ctx = StageContext(cfg, cfg.paths, compute)
    out = {}
    for name in STAGE_NAMES:
        stage = STAGES[name]
        if name == "train" and not key.startswith("rerun"):
            # Each append trains afresh on its own plan (sgc refuses to resume a run made on another plan).
            shutil.rmtree(cfg.paths.run, ignore_errors=True)
        with charged(f"{key}:{name}", counter, memory):
            start = time.perf_counter()
            (result,) = run_stages(ctx, [stage])
            seconds = time.perf_counter() - start
        out[name] = {"seconds": seconds, "skipped": result.skipped, "summary": result.summary}
        log.info("%s %s: %.1f s%s", key, name, seconds, " (skipped)" if result.skipped else "")
    return out


def measure(fields: int, workdir: Path, keep: bool, steps: int = 20, n_appends: int = 4) -> dict[str, Any]:
    """Simulate ``fields`` fields, run the pipeline over four appends, and gather every figure."""
    # As sgc.compute starts its own cluster: glibc's adaptive mmap threshold left on (11% per field).
    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
        cluster = LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            env=SINGLE_THREAD_ENV,
            silence_logs=logging.ERROR,
        )
    counter = StageCounter()
    with cluster, Client(cluster) as client:
        counter.wrap(cluster.scheduler)
        cluster.scheduler.add_plugin(counter)
        pids = list(client.run(os.getpid).values())
        with MemorySampler(pids) as memory:
            return _measure(
                fields, workdir, cluster.scheduler_address, counter, memory, keep, steps, n_appends
            )


def _measure(
    fields: int,
    workdir: Path,
    scheduler: str,
    counter: StageCounter,
    memory: MemorySampler,
    keep: bool,
    steps: int,
    n_appends: int,
) -> dict[str, Any]:
    # Imported here, not at the top: the workers are spawned processes that import this script first, and
    # the simulator imports numba, whose thread pool would then start before their NUMBA_NUM_THREADS=1.
    from sgc.sim.simulate import mirror_fields

    base = run_config(fields, [], [], workdir, scheduler, steps)
    if not keep:
        # Everything but the simulated mirror, which stands for SDSS and is reused when it is complete.
        leftovers = [p for p in base.paths.out_dir.glob("*") if p != base.paths.mirror]
        for path in (*leftovers, base.paths.store, base.runs_dir / base.name):
            shutil.rmtree(path, ignore_errors=True)
    appends: list[dict[str, Any]] = []
    with Compute(base.compute) as compute:
        ctx = StageContext(base, base.paths, compute)
        with charged("simulate", counter, memory):
            start = time.perf_counter()
            run_stages(ctx, [STAGES["simulate"]])
            simulate_s = time.perf_counter() - start
        names = [str(f) for f in mirror_fields(base.simulate, base.paths.mirror)]
        test = held_out(names)
        log.info("simulated %d fields in %.0f s; held out: %s", fields, simulate_s, ", ".join(test))
        previous = 0
        for k, count in enumerate(append_sizes(fields, n_appends), 1):
            cfg = run_config(fields, names[:count], test, workdir, scheduler, steps)
            stages = run_append(cfg, f"append{k}", counter, memory, compute)
            start = time.perf_counter()
            rerun = run_append(cfg, f"rerun{k}", counter, memory, compute)
            rerun_s = time.perf_counter() - start
            cube = CubeStore.open(cfg.paths.store)
            stored = cube.done_fields()
            appends.append(
                {
                    "append": k,
                    "new_fields": count - previous,
                    "fields": len(stored),
                    "test_fields": len(set(stored) & set(test)),
                    "stages": stages,
                    "rerun_seconds": rerun_s,
                    "rerun": rerun,
                    "rerun_all_skipped": all(s["skipped"] for s in rerun.values()),
                    "store_bytes": dir_bytes(cfg.paths.store),
                    "raw_bytes": dir_bytes(cfg.paths.raw),
                    "predictions_bytes": dir_bytes(cfg.paths.predictions),
                    "load": os.getloadavg(),
                }
            )
            previous = count
    return {
        "fields": fields,
        "train_steps": steps,
        "held_out": test,
        "simulate_seconds": simulate_s,
        "appends": appends,
        "scheduler": {stage: dict(c) for stage, c in counter.counts.items()},
        "memory_mb": {"client": dict(memory.client), "workers": dict(memory.workers)},
        "files": {stage: dict(c) for stage, c in FILES.counts.items()},
    }


def per_field(result: dict[str, Any]) -> dict[str, list[dict[str, float]]]:
    """For each stage, per append: s per unit of work, s per new field, peak memory and scheduler counts."""
    table: dict[str, list[dict[str, float]]] = {}
    for name in STAGE_NAMES:
        rows = []
        for a in result["appends"]:
            key = f"append{a['append']}:{name}"
            units = {"new": a["new_fields"], "all": a["fields"], "test": a["test_fields"], "run": 1}
            n = max(units[UNITS[name]], 1)
            seconds = a["stages"][name]["seconds"]
            counts = result["scheduler"].get(key, {})
            files = result["files"].get(key, {})
            rows.append(
                {
                    "seconds": seconds,
                    "units": n,
                    "s_per_unit": seconds / n,
                    "s_per_new_field": seconds / a["new_fields"],
                    "worker_peak_mb": result["memory_mb"]["workers"].get(key, 0.0),
                    "client_peak_mb": result["memory_mb"]["client"].get(key, 0.0),
                    "tasks_per_field": counts.get("tasks", 0) / a["new_fields"],
                    "graph_tasks_per_field": counts.get("graph_tasks", 0) / a["new_fields"],
                    "graphs": counts.get("graphs", 0),
                    "client_messages_per_field": counts.get("client_messages", 0) / a["new_fields"],
                    "folder_walks": files.get("walks", 0),
                    "files_listed": files.get("files_listed", 0),
                    "catalog_reads": files.get("catalog_reads", 0),
                    "rerun_seconds": a["rerun"][name]["seconds"],
                    "rerun_walks": result["files"].get(f"rerun{a['append']}:{name}", {}).get("walks", 0),
                }
            )
        table[name] = rows
    return table


def summary_rows(result: dict[str, Any], table: dict[str, list[dict[str, float]]]) -> list[dict]:
    """The rows of RESULTS.md: each figure of the last append against the first append."""
    rows = []
    unit_names = {"new": "new field", "all": "stored field", "test": "predicted field", "run": "run"}
    for name, per in table.items():
        first, last = per[0], per[-1]
        steps = result.get("train_steps", 20)
        unit = f"s/run ({steps} steps)" if UNITS[name] == "run" else f"s/{unit_names[UNITS[name]]}"
        rows.append(
            figure(
                f"{name}: time, last append",
                last["s_per_unit"],
                unit,
                anchor=("first append", first["s_per_unit"]),
                target="within 10%",
            )
        )
        rows.append(
            figure(
                f"{name}: append cost, last append",
                last["s_per_new_field"],
                "s/new field",
                anchor=("first append", first["s_per_new_field"]),
                target="within 10%",
            )
        )
        for what, label in (
            ("worker_peak_mb", "peak worker memory"),
            ("client_peak_mb", "peak client memory"),
        ):
            rows.append(
                figure(
                    f"{name}: {label}, last append",
                    last[what],
                    "MB",
                    anchor=("first append", first[what]),
                    target="within 10%",
                )
            )
        if any(p["tasks_per_field"] for p in per):
            for what, label in (
                ("tasks_per_field", "tasks"),
                ("graph_tasks_per_field", "graph size"),
                ("client_messages_per_field", "client messages"),
            ):
                rows.append(
                    figure(
                        f"{name}: {label} per new field, last append",
                        last[what],
                        "/new field",
                        anchor=("first append", first[what]),
                    )
                )
        for what, label in (("catalog_reads", "catalogue files read"), ("folder_walks", "folder walks")):
            if any(p[what] for p in per):
                rows.append(
                    figure(
                        f"{name}: {label} per stage run, last append",
                        last[what],
                        "/stage run",
                        anchor=("first append", first[what]),
                    )
                )
    first, last = result["appends"][0], result["appends"][-1]
    rows.append(
        figure(
            "sgc run with nothing to do, last append",
            last["rerun_seconds"] / last["fields"],
            "s/stored field",
            anchor=("first append", first["rerun_seconds"] / first["fields"]),
            target="within 10%",
        )
    )
    rows.append(
        figure(
            "cube store bytes per field, last append",
            last["store_bytes"] / last["fields"],
            "bytes/field",
            anchor=("first append", first["store_bytes"] / first["fields"]),
            ceiling=("raw (compressed) bytes per field", last["raw_bytes"] / last["fields"]),
        )
    )
    rows.append(
        figure(
            "simulate (one batch, not a survey stage)",
            result["simulate_seconds"] / result["fields"],
            "s/field",
        )
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fields", type=int, default=200, help="fields simulated and run (>= 4)")
    parser.add_argument(
        "--quick", action="store_true", help="2 fields in 2 appends, 2 training steps: a smoke run"
    )
    parser.add_argument("--workdir", type=Path, default=Path("stores/bench-scale"))
    parser.add_argument(
        "--keep", action="store_true", help="keep what an earlier run left, not only the simulated mirror"
    )
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--summarise", type=Path, help="recompute the per-stage table and summary of a saved result, in place"
    )
    args = parser.parse_args()
    if args.summarise:
        record = json.loads(args.summarise.read_text())
        record["per_stage"] = per_field(record)
        record["summary"] = summary_rows(record, record["per_stage"])
        args.summarise.write_text(json.dumps(record, indent=1) + "\n")
        return
    fields = 2 if args.quick else args.fields
    n_appends = 2 if args.quick else 4
    if fields < n_appends:
        parser.error(f"--fields must be at least {n_appends} (one per append)")
    out = args.out or HERE / "results" / ("scale-quick.json" if args.quick else "scale.json")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("distributed", "sgc"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    start = time.perf_counter()
    FILES.install()
    result = measure(fields, args.workdir, args.keep, 2 if args.quick else 20, n_appends)
    table = per_field(result)
    record = {
        "command": f"python bench/scale.py {'--quick' if args.quick else f'--fields {fields}'}",
        "wall_s": time.perf_counter() - start,
        "load_after": os.getloadavg(),
        **result,
        "per_stage": table,
        "summary": summary_rows(result, table),
        "machine": machine(["dask", "distributed", "zarr", "torch"]),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(
        f"{'stage':<10} {'unit':<6} "
        + " ".join(f"{'q' + str(k):>8}" for k in range(1, 5))
        + "  s/new field q1..q4"
    )
    for name, per in table.items():
        print(
            f"{name:<10} {UNITS[name]:<6} "
            + " ".join(f"{p['s_per_unit']:8.3f}" for p in per)
            + "  "
            + " ".join(f"{p['s_per_new_field']:.3f}" for p in per)
        )
    reruns = [f"{a['rerun_seconds']:.1f}" for a in result["appends"]]
    print(f"rerun (nothing to do), s: {' '.join(reruns)}; saved {out}")


if __name__ == "__main__":
    main()
