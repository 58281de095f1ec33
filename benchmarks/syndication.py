"""Syndication: AWS requests per delivery, and the delivery overhead against a bare urllib3 POST.

Part 1, requests per delivery (syndication_requests.py). In moto (`mock_aws`), with the jobs
table and a syndication queue and DLQ shaped as template.yaml's, the RateLimitsTable, and the
partners registered in SSM and Secrets Manager as an operator registers them: N listings are
published to P healthy partners (the local stack's partner endpoints, HTTPS on 127.0.0.1 in a
process of their own, a trustme CA, each verifying every signature; syndication_stack.py), and
a poller does what Lambda's event source mapping does: ReceiveMessage of up to 10,
`Worker.handle` of the syndication worker, DeleteMessageBatch of the records not reported as
failures. Every request is counted with botocore's `before-call` on jobkit's clients; the
poller's receive and delete are split over the records of each batch (0.1 each per record in a
batch of 10) by job type. DynamoDB capacity comes from item images (capacity.py), for the job
log and the rate-limit buckets. A first listing warms the Powertools Parameters cache and is
reported on its own (the cold calls); the N listings after it run with the cache warm.

Part 2, delivery overhead (syndication_overhead.py). (a) a bare
`urllib3.PoolManager(...).request("POST", ...)` of the same body and headers to a loopback
HTTPS partner that answers 200 at once (the same TLS setup, connection reused), and (b)
`Worker.handle` of batches of 10 deliveries to the same kind of partner: admission (rate
limit), claim, registry look-up (cached), signing, the POST, the outcome write, against moto.
Rounds interleaved, alternating which goes first; medians per delivery of wall time, repeated;
(b - a) split into moto's in-process DynamoDB, botocore's client side, registry look-ups,
signing and the rest.
"""

from __future__ import annotations

import time

from benchmarks import capacity
from benchmarks._common import BATCH_SIZE, Result, fmt_ms, fmt_us, median, prices, template
from benchmarks.syndication_overhead import REPETITIONS, ROUNDS, Overhead, measure_overhead
from benchmarks.syndication_requests import N_LISTINGS, Requests, measure_requests
from benchmarks.syndication_stack import CACHE_SECONDS, PARTNERS, function_paths

# -- dollars -----------------------------------------------------------------------------------


def dollars(r: Requests, own_cpu_s: float | None, aws_calls: float) -> dict[str, float]:
    """US dollars per million deliveries (publish share included), by service, prices.json.

    Lambda: invocation shares, and a duration of (measured own CPU per record, scaled to the
    256 MB CPU share) + the worker's AWS calls x the assumed in-region latency + the assumed
    partner response time, per record; the publish records are given the same CPU figure."""
    p = prices()
    lam, assumed = p["lambda"], p["assumptions"]
    per_listing = 1.0 / r.listings
    per_delivery = 1.0 / r.deliveries
    d, pub = r.deliver, r.publish
    fan = r.deliveries / r.listings
    cpu_share = min(1.0, lam["memory_mb"] / lam["full_vcpu_at_mb"])
    cpu_ms = (own_cpu_s or 0.0) * 1000 / cpu_share
    latency = assumed["dynamodb_write_latency_ms"]
    deliver_ms = cpu_ms + aws_calls * latency + assumed["partner_response_ms"]
    publish_calls = pub.ddb_calls_in_worker + pub.count("sqs:Send")
    publish_ms = cpu_ms + publish_calls * per_listing * latency
    batch_overhead = assumed["lambda_invoke_overhead_ms"] / BATCH_SIZE
    gb_s = lam["memory_mb"] / 1024 / 1000 * lam["per_gb_second_x86"] * 1e6
    ddb = p["dynamodb_on_demand"]
    wu = (d.write_units + d.rate_wu) * per_delivery + (
        pub.write_units + pub.rate_wu
    ) * per_listing / fan
    ru = (d.read_units + d.rate_ru) * per_delivery + (
        pub.read_units + pub.rate_ru
    ) * per_listing / fan
    sqs = d.sqs_billed + d.esm_billed
    sqs_pub = pub.sqs_billed + pub.esm_billed
    sm = p["secrets_manager"]["per_10000_api_calls"] / 1e4 * 1e6
    warm_sm = (
        d.count("secrets-manager:") * per_delivery
        + pub.count("secrets-manager:") * per_listing / fan
    )
    logs_bytes = (d.log.bytes + d.shared_log.bytes) * per_delivery + (
        pub.log.bytes + pub.shared_log.bytes
    ) * per_listing / fan
    return {
        "sqs": (sqs * per_delivery + sqs_pub * per_listing / fan)
        * p["sqs"]["standard_per_million_requests"],
        "dynamodb": wu * ddb["per_million_write_request_units"]
        + ru * ddb["per_million_read_request_units"],
        "secrets manager": warm_sm * sm,
        "ssm": 0.0,
        "lambda": (d.invocations_share * per_delivery + pub.invocations_share * per_listing / fan)
        * lam["per_million_requests"]
        + (deliver_ms + batch_overhead + (publish_ms + batch_overhead) / fan) * gb_s,
        "logs": logs_bytes * p["cloudwatch_logs"]["per_gb_ingested"] / 1e3,
        "_deliver_ms": deliver_ms,
    }


# -- report ------------------------------------------------------------------------------------


class _Columns:
    """Part 1's columns: per listing (publish job), per delivery, all-in per delivery."""

    width = 14

    def __init__(self, r: Requests) -> None:
        self.r = r
        self.fan = r.deliveries / r.listings

    def head(self) -> None:
        w = self.width
        print(
            f"  {'per':<40}{'publish job':>{w}}{'deliver job':>{w}}{'per delivery':>{w}}\n"
            f"  {'':<40}{'(/listing)':>{w}}{'(/delivery)':>{w}}{'(all-in)':>{w}}"
        )

    def line(self, label: str, a: float, b: float, fmt: str = ".2f") -> None:
        r, w = self.r, self.width
        cells = [a / r.listings, b / r.deliveries, a / r.listings / self.fan + b / r.deliveries]
        print(
            f"  {label:<40}" + "".join("-".rjust(w) if v == 0 else f"{v:>{w}{fmt}}" for v in cells)
        )


def _report_requests(r: Requests) -> None:
    pub, d = r.publish, r.deliver
    p_count = len(PARTNERS)
    columns = _Columns(r)
    line = columns.line
    columns.head()
    for op in sorted(set(pub.calls) | set(d.calls)):
        line(f"  {op}", pub.calls[op], d.calls[op])
    line("DynamoDB requests", pub.count("dynamodb:"), d.count("dynamodb:"))
    line("  job log write requests (items)", pub.item_writes, d.item_writes)
    line("  job log table write units", pub.table_wu, d.table_wu)
    for index in capacity.indexes_of(template()["Resources"]["JobsTable"]["Properties"]):
        line(f"  job log index {index.name} WU", pub.index_wu[index.name], d.index_wu[index.name])
    line("  rate-limit bucket write units", pub.rate_wu, d.rate_wu)
    line("  write units (all)", pub.write_units + pub.rate_wu, d.write_units + d.rate_wu)
    line("  job log read units", pub.read_units, d.read_units)
    line("  rate-limit bucket read units", pub.rate_ru, d.rate_ru)
    line("SQS requests", pub.count("sqs:"), d.count("sqs:"))
    line(
        "SQS billed requests (64 KB chunks)",
        pub.sqs_billed + pub.esm_billed,
        d.sqs_billed + d.esm_billed,
    )
    line("SSM requests (cache warm)", pub.count("ssm:"), d.count("ssm:"))
    line(
        "Secrets Manager requests (cache warm)",
        pub.count("secrets-manager:"),
        d.count("secrets-manager:"),
    )
    line("Lambda invocations", pub.invocations_share, d.invocations_share)
    line("HTTP requests to partners", 0, r.posts - p_count)
    line(
        "log bytes (worker stdout)",
        pub.log.bytes + pub.shared_log.bytes,
        d.log.bytes + d.shared_log.bytes,
        ".0f",
    )
    print(
        f"  partners: {r.posts} POSTs in all ({r.deliveries} + {p_count} of the cold listing), "
        f"{r.verified} signatures verified there, {r.connections} TLS connections "
        f"(HTTP/1.1 keep-alive); a delivery item in the log after success: {r.item_bytes} bytes"
    )
    cold = ", ".join(f"{k} {v}" for k, v in sorted(r.cold.items())) or "none"
    print(
        f"  cold cache (the first listing, {p_count} partners): {cold}; then none until the "
        f"cache's {CACHE_SECONDS} s pass"
    )


def _report_overhead(o: Overhead) -> tuple[float, float, float, float]:
    """Prints part 2; returns, per delivery, (a), (b), moto's part of (b), and jobkit's own
    part without moto ((b) - (a) - moto)."""
    bare, worker = median(o.bare), median(o.worker)
    moto, boto, signing, registry = (median(x) for x in (o.moto, o.botocore, o.sign, o.registry))
    post_in = median(o.post_in_worker)
    own = worker - bare
    post_extra = post_in - bare
    rest = own - moto - boto - signing - registry - post_extra

    def spread(values: list[float]) -> str:
        return ", ".join(fmt_us(v) for v in values)

    print(f"  per delivery, median of {REPETITIONS} repetitions (each a median of its rounds):")
    print(f"  (a) bare urllib3 POST                       {fmt_us(bare):>12}   [{spread(o.bare)}]")
    print(
        f"  (b) Worker.handle, one delivery             {fmt_us(worker):>12}   [{spread(o.worker)}]"
    )
    print(f"      of which the POST inside the Sender     {fmt_us(post_in):>12}")
    print(f"  ratio (b) / (a)                             {worker / bare:>11.1f}x")
    print(f"  jobkit's own part (b) - (a)                 {fmt_us(own):>12}")
    print(f"    DynamoDB in moto (in-process, not AWS)    {fmt_us(moto):>12}")
    print(f"    botocore client side of those calls       {fmt_us(boto):>12}")
    print(f"    registry look-ups (cache hits)            {fmt_us(registry):>12}")
    print(f"    signing (Standard Webhooks, 1 secret)     {fmt_us(signing):>12}")
    print(f"    the POST's extra time inside (b)          {fmt_us(post_extra):>12}")
    print(f"    the rest (validation, logs, batch, ...)   {fmt_us(rest):>12}")
    no_moto = own - moto
    print(
        f"  jobkit's own without moto (b) - (a) - moto  {fmt_us(no_moto):>12}"
        f"   ((b) - moto) / (a) = {(worker - moto) / bare:.1f}x"
    )
    aws_calls = sum(o.calls_per_delivery.values())
    latency = prices()["assumptions"]["dynamodb_write_latency_ms"] / 1000
    print(
        "  AWS calls per delivery in handle: "
        + ", ".join(f"{k} {v:.2f}" for k, v in o.calls_per_delivery.items())
    )
    print(
        f"  on AWS those {aws_calls:.0f} calls are round trips instead: at the assumed "
        f"{latency * 1000:g} ms each, {fmt_ms(aws_calls * latency)} per delivery on top of "
        f"{fmt_us(no_moto)} of jobkit's own work"
    )
    print(
        f"  TLS connections opened in the timed rounds: bare {o.connections['bare']}, "
        f"worker {o.connections['worker']} (connections reused)"
    )
    return bare, worker, moto, no_moto


def _report_dollars(r: Requests, no_moto: float, aws_calls: float) -> float:
    """Prints the dollars per million deliveries; returns their total."""
    p = prices()
    p_count = len(PARTNERS)
    latency = p["assumptions"]["dynamodb_write_latency_ms"] / 1000
    costs = dollars(r, no_moto, aws_calls)
    print(
        f"\n  dollars per million deliveries (prices.json, {p['region']}), publish share included:"
    )
    for part in ("sqs", "dynamodb", "secrets manager", "ssm", "lambda", "logs"):
        print(f"    {part:<24}{costs[part]:>10,.3f}")
    total = sum(v for k, v in costs.items() if not k.startswith("_"))
    print(f"    {'total':<24}{total:>10,.3f}")
    sm_call = p["secrets_manager"]["per_10000_api_calls"] / 1e4
    per_hour = 60 * 60 / CACHE_SECONDS * p_count * sm_call
    print(
        f"    Lambda duration model per delivery: {costs['_deliver_ms']:.1f} ms (own CPU at the "
        f"256 MB share + {aws_calls:.0f} calls x {latency * 1000:g} ms + "
        f"{p['assumptions']['partner_response_ms']:g} ms assumed partner response)"
    )
    print(
        f"    cache refresh: 1 GetParametersByPath ($0) + up to {p_count} GetSecretValue per "
        f"container every {CACHE_SECONDS} s = ${per_hour:.4f} per container-hour; a delivery "
        f"that finds its partner's secret expired pays ${sm_call * 1e6:.2f} per million"
    )
    return total


def _results(r: Requests, total: float, bare: float, worker: float, moto: float) -> list[Result]:
    pub, d = r.publish, r.deliver
    fan = r.deliveries / r.listings
    ops = sorted(set(pub.calls) | set(d.calls))
    all_in = {op: pub.calls[op] / r.listings / fan + d.calls[op] / r.deliveries for op in ops}
    return [
        Result(
            "syndication",
            "AWS requests per delivery, all-in (warm cache)",
            sum(all_in.values()),
            None,
        ),
        Result(
            "syndication",
            "write units per delivery (log + rate limit)",
            (pub.write_units + pub.rate_wu) / r.listings / fan
            + (d.write_units + d.rate_wu) / r.deliveries,
            None,
        ),
        Result(
            "syndication",
            "HTTP requests per delivery",
            (r.posts - len(PARTNERS)) / r.deliveries,
            None,
        ),
        Result("syndication", "$ per million deliveries", total, None, "$"),
        Result("syndication", "delivery wall time (b) / bare POST (a)", worker / bare, None, "x"),
        Result(
            "syndication", "(b) without moto / bare POST (a)", (worker - moto) / bare, None, "x"
        ),
    ]


def run(quick: bool = False) -> list[Result]:
    function_paths()
    n = 5 if quick else N_LISTINGS
    print(
        f"\n== 5. Syndication: requests per delivery ({n} listings x {len(PARTNERS)} loopback "
        f"HTTPS partners, batches of {BATCH_SIZE}) =="
    )
    started = time.monotonic()
    r = measure_requests(n)
    _report_requests(r)
    rounds = 2 if quick else ROUNDS
    print(
        f"\n== 5. Syndication: delivery overhead vs a bare urllib3 POST ({REPETITIONS} x "
        f"{rounds} rounds of {BATCH_SIZE}, interleaved, wall time) =="
    )
    o = measure_overhead(rounds=rounds, repetitions=REPETITIONS)
    bare, worker, moto, no_moto = _report_overhead(o)
    total = _report_dollars(r, no_moto, sum(o.calls_per_delivery.values()))
    print(f"  (syndication benchmark: {time.monotonic() - started:.0f} s)")
    return _results(r, total, bare, worker, moto)
