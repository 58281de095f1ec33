"""`python -m benchmarks` (`make bench`): run every benchmark and print PASS/MISS per target.

Options: --quick (fewer rounds, a smoke run),
--only coldstart|warm|requests|time|syndication|throughput (repeatable),
--strict (exit 1 when a target is missed; by default the run only reports).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import UTC, datetime

from benchmarks._common import Result, setup_process

ALL = ("coldstart", "warm", "requests", "time", "syndication", "throughput")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (
        f"{platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )


def summary(results: list[Result]) -> str:
    rows = [("benchmark", "measure", "value", "target", "verdict")]
    for r in results:
        value = "n/a" if r.value != r.value else f"{r.value:,.2f}{r.unit}"
        if r.unit == "$":
            value = f"${r.value:,.2f}"
        target = "-" if r.target is None else f"<= {r.target:g}{r.unit}"
        rows.append((r.benchmark, r.measure, value, target, r.verdict))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
        if n == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rounds: a smoke run")
    parser.add_argument("--only", action="append", choices=ALL, help="run only these")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    selected = args.only or list(ALL)
    setup_process()

    started = time.monotonic()
    print(f"jobkit benchmarks, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"machine: {machine()}")
    print("every figure is a ratio to a baseline measured in this run (medians, interleaved)")
    results: list[Result] = []
    cpu_per_record = warm_figures = None
    if "coldstart" in selected:
        from benchmarks import coldstart

        results += coldstart.run(runs=5 if args.quick else coldstart.RUNS)
    if "warm" in selected:
        from benchmarks import warm, warm_report

        rows, figures = warm_report.run(rounds=8 if args.quick else warm.ROUNDS)
        results += rows
        cpu_per_record = figures.lambda_cpu  # worker + botocore + HTTP stack, over HTTPS
        warm_figures = figures
    if "requests" in selected:
        from benchmarks import requests_per_job

        results += requests_per_job.run(
            cpu_per_record, n=50 if args.quick else requests_per_job.N_JOBS
        )
        from benchmarks import enqueue_many

        results += enqueue_many.run(quick=args.quick)
    if "time" in selected:
        from benchmarks import time_requests

        results += time_requests.run(cpu_per_record)
    if "syndication" in selected:
        from benchmarks import syndication

        results += syndication.run(quick=args.quick)
    if "throughput" in selected:
        from benchmarks import throughput

        results += throughput.run(warm_figures, quick=args.quick)

    print(f"\n== Summary ({time.monotonic() - started:.0f} s) ==")
    print(summary(results))
    missed = [r for r in results if r.verdict in ("MISS", "SKIP")]
    if missed:
        print(f"\n  {len(missed)} target(s) missed or not measured; see BENCHMARKS.md for why.")
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
