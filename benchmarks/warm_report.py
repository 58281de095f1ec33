"""The warm benchmark's printout and summary rows (warm.py measures)."""

from __future__ import annotations

from collections.abc import Callable

from benchmarks._common import Result, fmt_us, median
from benchmarks.warm import ROUNDS, RUNS, TARGET_RATIO, Run, WarmFigures, measure, spread

WORKERS = {"jobkit": "jobkit", "hand": "hand-written"}


def _spread(values: list[float], fmt: Callable[[float], str]) -> str:
    low, mid, high = spread(values)
    return f"{fmt(mid)} ({fmt(low)} - {fmt(high)})"


def _x(value: float) -> str:
    return f"{value:.2f}x"


def _count(value: float) -> str:
    return f"{value:.2f}"


ROWS: list[tuple[str, Callable[[Run, str], float], Callable[[float], str]]] = [
    ("(c) moto in-process: worker + botocore", lambda r, w: r.get("client", w), fmt_us),
    ("(b) moto in-process: own code only", lambda r, w: r.get("own", w), fmt_us),
    ("    AWS calls per record", lambda r, w: r.get("calls", w), _count),
    ("HTTPS: all CPU (+ urllib3, TLS, socket)", lambda r, w: r.get("total", f"{w}@https"), fmt_us),
    ("HTTPS: send path, per call", lambda r, w: r.get("send", f"{w}@https"), fmt_us),
    ("HTTPS: all less the send path", lambda r, w: r.https_less_send(w), fmt_us),
    ("HTTPS: own code only", lambda r, w: r.get("own", f"{w}@https"), fmt_us),
]


def _table(f: WarmFigures) -> None:
    width = 36
    print(
        f"  {'per record (median (min - max) of runs)':<42}"
        + "".join(f"{name:<{width}}" for name in WORKERS.values())
    )
    for label, get, fmt in ROWS:
        cells = "".join(f"{_spread(_per_run(f, get, w), fmt):<{width}}" for w in WORKERS)
        print(f"  {label:<42}{cells}")
    for side, label in (("minimal", "fewer duties (MinimalWorker)"), ("bare", "bare")):
        cpu = f.each(lambda r, side=side: r.get("client", side))
        print(f"  {'(c) ' + label:<42}{_spread(cpu, fmt_us)}")


def _per_run(f: WarmFigures, get: Callable[[Run, str], float], worker: str) -> list[float]:
    return [get(r, worker) for r in f.runs]


def _logs(f: WarmFigures) -> None:
    lines = " / ".join(
        f"{name} {median(_per_run(f, lambda r, w: r.info_lines[w], w)):.2f}"
        for w, name in WORKERS.items()
    )
    sizes = " / ".join(
        f"{median(_per_run(f, lambda r, w: r.log_bytes[w], w)):.0f}" for w in WORKERS
    )
    print(f"  INFO lines per job, counted in this run: {lines}; log bytes per job {sizes}")
    print("  (both include their EMF metrics line per batch)")


def run(rounds: int = ROUNDS, runs: int = RUNS) -> tuple[list[Result], WarmFigures]:
    print("\n== 2. Warm CPU per record: jobkit Worker vs a hand-written worker, same duties ==")
    f = measure(runs, rounds)
    return report(f, runs, rounds), f


def report(f: WarmFigures, runs: int, rounds: int) -> list[Result]:
    print(
        f"  {runs} runs of {rounds} rounds; a round = one batch of 10 per side (jobkit and "
        "hand-written on moto in-process and over HTTPS, fewer duties, bare), rotating order; "
        "CPU per record = a run's median"
    )
    _logs(f)
    _table(f)
    ratios = {
        "target": f.each(lambda r: r.get("client", "jobkit") / r.get("client", "hand")),
        "own": f.each(lambda r: r.get("own", "jobkit") / r.get("own", "hand")),
        "https": f.each(lambda r: r.get("total", "jobkit@https") / r.get("total", "hand@https")),
        "minimal": f.each(lambda r: r.get("client", "jobkit") / r.get("client", "minimal")),
        "bare": f.each(lambda r: r.get("client", "jobkit") / r.get("client", "bare")),
        "http": f.each(lambda r: r.get("total", "jobkit@https") / r.get("client", "jobkit") - 1),
        "hooks": f.each(lambda r: r.https_less_send("jobkit") / r.get("client", "jobkit")),
    }
    print(
        f"  (c) jobkit / hand-written           {_spread(ratios['target'], _x)}"
        f"   target <= {TARGET_RATIO}"
    )
    print(f"  (b) jobkit / hand-written           {_spread(ratios['own'], _x)}")
    print(f"  over HTTPS, jobkit / hand-written   {_spread(ratios['https'], _x)}")
    print(f"  context: jobkit (c) / fewer duties  {_spread(ratios['minimal'], _x)}")
    print(f"  context: jobkit (c) / bare          {_spread(ratios['bare'], _x)}")
    print(
        f"  HTTP stack on top of (c), jobkit    {_spread(ratios['http'], lambda v: f'{v:+.0%}')}"
        f"  ({f.connections} TLS connections for {f.https_calls} calls: kept alive)"
    )
    print(
        f"  HTTPS less send path / (c), jobkit  {_spread(ratios['hooks'], _x)}"
        "  (botocore with and without moto in the process)"
    )
    print(f"  Lambda duration input: {fmt_us(f.lambda_cpu)} CPU per record (jobkit over HTTPS)")
    print(
        f"  enqueue_many over HTTPS, given ids: {_spread(f.enqueue_cpu, fmt_us)} CPU per job "
        "(all threads; the nightly fan-out's cost per child)"
    )

    def rng(values: list[float], scale: float = 1.0) -> str:
        low, _, high = spread(values)
        return f"runs {low * scale:.2f}-{high * scale:.2f}"

    def row(measure: str, key: str, target: float | None = None) -> Result:
        values = ratios[key]
        return Result("warm", f"{measure} ({rng(values)})", median(values), target, "x")

    return [
        row("(c) CPU/record jobkit / hand-written", "target", TARGET_RATIO),
        row("(b) own code only, jobkit / hand-written", "own"),
        row("over HTTPS, HTTP stack incl., jobkit / hand", "https"),
        row("context: jobkit / a worker with fewer duties", "minimal"),
        row("context: jobkit / bare BatchProcessor", "bare"),
        Result(
            "warm",
            f"HTTP stack's CPU on top of (c), % ({rng(ratios['http'], 100)})",
            100 * median(ratios["http"]),
            None,
            "%",
        ),
    ]
