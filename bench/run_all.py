"""Every benchmark in one run, and ``bench/RESULTS.md`` written from what that run measured.

Each benchmark is run as its own process (so one's threads, caches and memory do not disturb the next),
in the order of the pipeline, and saves its JSON in ``--results``. Every JSON holds a ``"summary"``: rows
made by :func:`timing.figure`, each figure beside its anchor (a baseline design) and its ceiling (the
machine's limit for that work), measured in the same run. This script turns those rows into one table per
stage, with the ratios, the target and whether it is met, and heads the page with the date, the commit and
the machine.

    python bench/run_all.py [--quick] [--only loader,ingest] [--reuse scale] [--results DIR] [--report PATH]

``--quick`` runs every benchmark in its smoke mode (fewer fields, patches and repetitions): it checks that
the whole suite runs and writes every table, and its figures are rougher. Without it the suite takes about
an hour on 2 cores. A benchmark that fails is reported in its section with its exit status and the end of
its output; the others still run. ``--reuse scale`` reports the saved ``scale.json`` of a longer run
(``python bench/scale.py --fields 200`` takes hours here) instead of running it, and says so.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from timing import machine

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PACKAGES = ("numpy", "torch", "zarr", "numcodecs", "numba", "dask", "distributed", "astropy")


@dataclass(frozen=True)
class Bench:
    """One benchmark script and how the suite runs it."""

    name: str  # also the stem of its JSON in --results
    title: str
    script: str
    args: list[str] = field(default_factory=list)
    quick_args: list[str] = field(default_factory=list)


SUITE = (
    Bench("read_frames", "Reading frames", "read_frames.py", quick_args=["--quick"]),
    Bench("alignment", "Alignment", "alignment.py", quick_args=["--quick"]),
    Bench("ingest", "Ingest", "ingest.py", quick_args=["--quick"]),
    Bench("labels", "Labels", "labels.py", quick_args=["--quick"]),
    Bench("exclusion", "Exclusion masks", "exclusion.py", quick_args=["--quick"]),
    Bench("loader", "Loader: patches into the model", "loader.py", quick_args=["--quick"]),
    Bench("train", "Training", "train.py", quick_args=["--quick"]),
    Bench("predict", "Prediction", "predict.py", quick_args=["--quick"]),
    Bench("layout", "Store layout at survey scale", "layout.py", quick_args=["--quick"]),
    Bench("scale", "Scale: the whole pipeline as fields grow", "scale.py", quick_args=["--quick"]),
)

# ">= 30000", "<= 0.12 px" (a unit after the bound is allowed), "<= 1.15x ceiling", ">= 3x anchor".
TARGET = re.compile(r"^\s*(<=|>=|<|>)\s*([0-9.eE+-]+)\s*(x\s*(anchor|ceiling)|[A-Za-z/]+)?\s*$")
WITHIN = re.compile(r"^\s*within\s*([0-9.]+)\s*%\s*$")


@dataclass
class Outcome:
    """What running one benchmark gave (or, reused, what an earlier run of it saved)."""

    bench: Bench
    seconds: float
    returncode: int
    tail: str
    record: dict | None
    reused_from: str | None = None


def run_bench(bench: Bench, quick: bool, results: Path) -> Outcome:
    """Run one benchmark, saving its JSON in ``results``; its output goes to this process's output."""
    out = results / f"{bench.name}.json"
    out.unlink(missing_ok=True)
    command = [sys.executable, str(HERE / bench.script), *bench.args, "--out", str(out)]
    if quick:
        command += bench.quick_args
    print(f"\n=== {bench.name}: {' '.join(command[1:])}", flush=True)
    start = time.perf_counter()
    process = subprocess.run(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seconds = time.perf_counter() - start
    print(process.stdout, end="", flush=True)
    record = json.loads(out.read_text()) if out.is_file() and process.returncode == 0 else None
    return Outcome(bench, seconds, process.returncode, process.stdout[-3000:], record)


def reuse_bench(bench: Bench, results: Path) -> Outcome:
    """An earlier run's JSON of ``bench`` in ``results``, not run again (for runs longer than the suite)."""
    out = results / f"{bench.name}.json"
    if not out.is_file():
        raise SystemExit(f"--reuse {bench.name}: {out} does not exist; run bench/{bench.script} first")
    record = json.loads(out.read_text())
    when = datetime.fromtimestamp(out.stat().st_mtime, timezone.utc)
    how = record.get("command", f"python bench/{bench.script}")
    return Outcome(bench, 0.0, 0, "", record, reused_from=f"{how}, saved {when:%Y-%m-%d %H:%M} UTC")


def check_target(row: dict) -> bool | None:
    """Whether the row meets its target; None where it has none or the target is not machine-readable.

    A target reads ``">= 30000"`` or ``"<= 0.12 px"`` (the value itself, in its unit), ``"<= 1.15x ceiling"``
    or ``">= 3x anchor"`` (the value's ratio to the ceiling or the anchor), or ``"within 10%"`` (of the
    anchor, either way); several joined by ``;`` must all hold.
    """
    results = [_check(row, part) for part in (row.get("target") or "").split(";")]
    if not results or None in results:
        return None
    return all(results)


def _check(row: dict, target: str) -> bool | None:
    within = WITHIN.match(target)
    if within:
        anchor = row.get("anchor")
        if not anchor or not anchor["value"]:
            return None
        return abs(row["value"] / anchor["value"] - 1) <= float(within.group(1)) / 100
    match = TARGET.match(target)
    if not match:
        return None
    op, bound, _, against = match.groups()
    value = row["value"]
    if against:
        reference = row.get(against)
        if not reference or not reference["value"]:
            return None
        value /= reference["value"]
    bound = float(bound)
    return {"<=": value <= bound, ">=": value >= bound, "<": value < bound, ">": value > bound}[op]


def number(value: float) -> str:
    """A figure at a precision that reads well whatever its size."""
    size = abs(value)
    if size >= 1000:
        return f"{value:,.0f}"
    if size >= 100:
        return f"{value:.0f}"
    if size >= 10:
        return f"{value:.1f}"
    if size >= 0.1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def ratio(value: float, reference: dict | None) -> str:
    if not reference or not reference["value"]:
        return ""
    return f"{value / reference['value']:.2f}x"


def table(rows: list[dict]) -> list[str]:
    """Markdown lines of one stage's table."""
    lines = [
        "| figure | value | unit | anchor | anchor value | vs anchor | ceiling | ceiling value | of ceiling "
        "| target | met |",
        "| --- | ---: | --- | --- | ---: | ---: | --- | ---: | ---: | --- | --- |",
    ]
    for row in rows:
        anchor, ceiling = row.get("anchor"), row.get("ceiling")
        met = check_target(row)
        cells = [
            row["name"],
            number(row["value"]),
            row["unit"],
            anchor["what"] if anchor else "",
            number(anchor["value"]) if anchor else "",
            ratio(row["value"], anchor),
            ceiling["what"] if ceiling else "",
            number(ceiling["value"]) if ceiling else "",
            ratio(row["value"], ceiling),
            row.get("target") or "",
            {True: "yes", False: "**no**", None: ""}[met],
        ]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return lines


def commit() -> str:
    """The commit measured, marked ``+changes`` where the working tree differs from it."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    if head.returncode:
        return "unknown (not a git checkout)"
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "sgc", "bench"], cwd=REPO, capture_output=True
    )
    return head.stdout.strip() + (" +changes" if dirty.stdout.strip() else "")


def describe_machine() -> dict:
    """Cores, memory, CPU model, GPU and the main packages' versions of this machine."""
    host = machine(PACKAGES)
    host["memory_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    import torch

    host["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return host


def render(
    outcomes: list[Outcome], quick: bool, started: datetime, total_s: float, load: tuple[float, ...]
) -> str:
    """The text of RESULTS.md."""
    host = describe_machine()
    lines = [
        "# sgc benchmark results",
        "",
        f"Generated by `python bench/run_all.py{' --quick' if quick else ''}`: do not edit by hand, run it "
        "again.",
        "",
        f"- date: {started:%Y-%m-%d %H:%M} UTC; the suite took {total_s / 60:.1f} min",
        f"- commit: {commit()}",
        f"- machine: {host['cores']} cores, {host['memory_gib']} GiB memory, CPU {host['cpu']}, "
        f"GPU {host['gpu']}; Python {host['python']}, "
        + ", ".join(f"{name} {v}" for name, v in host["versions"].items()),
        f"- load average (1, 5, 15 min) before the suite: {', '.join(f'{v:.2f}' for v in load)}; after: "
        f"{', '.join(f'{v:.2f}' for v in os.getloadavg())}",
        "",
        "Each figure stands beside its anchor (the design it replaces or a baseline) and its ceiling (what",
        "the machine allows for that work), all measured in the same run. *vs anchor* and *of ceiling* are",
        "the figure divided by them: above 1 is better for rates, below 1 for times. *met* checks the",
        "target of issue 12 where one is set.",
    ]
    if quick:
        lines += [
            "",
            "**Smoke run (`--quick`)**: fewer fields, patches and repetitions than the full suite; the",
            "figures are rough.",
        ]
    for outcome in outcomes:
        bench = outcome.bench
        lines += ["", f"## {bench.title}", ""]
        if outcome.reused_from:
            lines.append(f"Not run by this suite: reused from `{outcome.reused_from}`.")
        else:
            lines.append(f"`python bench/{bench.script}` ({outcome.seconds:.0f} s)")
        lines.append("")
        if outcome.record is None:
            lines += [
                f"**Failed** (exit status {outcome.returncode}); the end of its output:",
                "",
                "```",
                *outcome.tail.strip().splitlines()[-20:],
                "```",
            ]
            continue
        rows = outcome.record.get("summary") or []
        if not rows:
            lines.append(f"No summary rows in `{bench.name}.json`.")
            continue
        lines += table(rows)
        for note in outcome.record.get("summary_notes", []):
            lines += ["", note]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every benchmark's smoke mode")
    names = [b.name for b in SUITE]
    parser.add_argument("--only", default=None, help=f"comma-separated subset of: {', '.join(names)}")
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help="folder of the JSON results (default bench/results, bench/results/quick with --quick, so that a "
        "smoke run never overwrites the figures docs/scaling.md is computed from)",
    )
    parser.add_argument("--report", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument(
        "--reuse",
        default="",
        help="comma-separated benchmarks whose saved JSON in --results is reported instead of running them "
        "(e.g. scale, after `python bench/scale.py --fields 200`)",
    )
    args = parser.parse_args()
    args.results = args.results or HERE / "results" / ("quick" if args.quick else "")
    wanted = names if args.only is None else [n.strip() for n in args.only.split(",")]
    reused = [n.strip() for n in args.reuse.split(",") if n.strip()]
    unknown = sorted((set(wanted) | set(reused)) - set(names))
    if unknown:
        raise SystemExit(f"no benchmark named {', '.join(unknown)}; they are {', '.join(names)}")

    args.results.mkdir(parents=True, exist_ok=True)
    started = datetime.now(timezone.utc)
    load = os.getloadavg()
    if load[0] > 0.5:
        print(f"note: load average {load[0]:.2f} before the suite; other work disturbs the figures")
    start = time.perf_counter()
    outcomes = [
        reuse_bench(b, args.results) if b.name in reused else run_bench(b, args.quick, args.results)
        for b in SUITE
        if b.name in wanted or b.name in reused
    ]
    text = render(outcomes, args.quick, started, time.perf_counter() - start, load)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(text)
    failed = [o.bench.name for o in outcomes if o.record is None]
    print(f"\nwrote {args.report}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
