"""Cold start: import each function's handler module in a fresh interpreter, vs boto3 + a client,
with what Lambda's Python 3.13 runtime has: `awscrt` and pyOpenSSL (`OpenSSL`) blocked.

This virtualenv's boto3 and botocore load awscrt and pyOpenSSL when they can (`boto3[crt]`,
moto's dependencies); Lambda's runtime ships neither, and both are slow to import. So every
probe, the baseline and the handlers alike, starts with a meta-path finder that refuses them
(ImportError, as on Lambda, where botocore and urllib3 go without them). Without that the
baseline is slower than Lambda's and every ratio looks better than it is.

Each sample is a new subprocess of this virtualenv's Python with the environment a deployed
function has (from the deployed view of template.yaml) and sys.path = [function folder,
layers], the way Lambda puts /var/task and /opt/python first. The time is taken inside the
subprocess around the import, so interpreter start-up (the same for both) is left out. Runs
are interleaved and shuffled; min, median and max are printed and the medians compared. One
unrecorded warm-up run of each writes the .pyc files first.

Per function two variants: `import app` (Lambda's Init phase; target <= 1.3x the baseline) and
`import app` + what its first happy-path record makes (its boto3 clients, and the imports it
defers to then): informational. Lambda bills the Init phase (since August 2025) and the first
record's extra time, so both medians are turned into $ per million cold starts with the cost
model of the other benchmarks (prices.json: time scaled to the CPU share of the function's
memory, GB-seconds at the x86 price).
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks._common import (
    ACCOUNT,
    APPS_LAYER,
    FAKE_AWS_ENV,
    LAYER,
    REGION,
    ROOT,
    Result,
    median,
    prices,
    template,
)

TARGET_RATIO = 1.3
RUNS = 15

# Packages the AWS Lambda Python 3.13 runtime does not ship (its boto3 and botocore come
# without them) but this virtualenv has: botocore uses awscrt when it can import it and urllib3
# pyOpenSSL, both slow to load. Every probe (baseline and handlers alike) blocks them, so both
# sides load what they would load on Lambda.
NOT_ON_LAMBDA = ("awscrt", "OpenSSL")

_BLOCK = f"""
import sys
class _NotOnLambda:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.split(".", 1)[0] in {NOT_ON_LAMBDA!r}:
            raise ImportError(f"{{name}} is not in the Lambda Python runtime")
        return None
sys.meta_path.insert(0, _NotOnLambda)
"""

_PROBE = """
import sys, time
sys.path[:0] = {paths!r}
t0, c0 = time.perf_counter(), time.process_time()
{code}
t1, c1 = time.perf_counter(), time.process_time()
print("ELAPSED", t1 - t0, c1 - c0, len(sys.modules))
"""

BASELINE_CODE = 'import boto3\nboto3.client("sqs")'


def _clients(*names: str) -> str:
    return "from jobkit import aws\n" + "".join(f"aws.client({n!r})\n" for n in names)


# What a function's first happy-path record adds to the import: the boto3 clients it creates
# (jobkit makes them lazily) and the imports its code defers to first use.
FIRST_RECORD = {
    "EmailFunction": _clients("dynamodb", "sesv2")
    + "from email_worker.render import environment\nenvironment()  # Jinja2\n"
    + "from jobkit_apps.email import InvitePayload\n"
    + "InvitePayload.model_rebuild()  # email-validator\n",
    "NightlyFunction": _clients("dynamodb", "sqs"),
    "RemindersFunction": _clients("dynamodb", "sqs")
    + "from jobkit_apps.applications import Application\n"
    + "Application.model_rebuild()  # email-validator\n"
    + "from jobkit_apps.email import DocumentsReminderPayload\n"
    + "DocumentsReminderPayload.model_rebuild()\n",
    # An enqueue whose payload is refused: the route, its body model and validation are built
    # as for a real enqueue (the clients above are what it would then call)
    "ApiFunction": _clients("dynamodb", "sqs")
    + "import types, json\n"
    + "ctx = types.SimpleNamespace(function_name='api', memory_limit_in_mb=256, "
    + "invoked_function_arn='arn', aws_request_id='1')\n"
    + "event = {'version': '2.0', 'routeKey': '$default', 'rawPath': "
    + "'/types/email.send_invite/jobs', 'headers': {}, 'body': json.dumps({'payload': {}}), "
    + "'requestContext': {'http': {'method': 'POST', 'path': '/types/email.send_invite/jobs'}, "
    + "'stage': '$default'}, 'isBase64Encoded': False}\n"
    + "assert app.lambda_handler(event, ctx)['statusCode'] == 422\n",
    # Partners through Powertools Parameters (ssm, secretsmanager); the HTTP adapter (urllib3)
    "SyndicationFunction": _clients("dynamodb", "sqs")
    + "from syndication_worker.processors import runtime\nruntime().registry._providers()\n",
}
FIRST_RECORD_NOTE = {
    "ApiFunction": "dynamodb, sqs clients; an enqueue request routed and validated "
    "(its route and body model built; email-validator)",
    "EmailFunction": "dynamodb, sesv2 clients; Jinja2 environment; email-validator",
    "NightlyFunction": "dynamodb, sqs clients",
    "RemindersFunction": "dynamodb, sqs clients; email-validator (applicant, email payload)",
    "SyndicationFunction": "dynamodb, sqs clients; ssm, secretsmanager via Parameters; urllib3",
}
_PSEUDO = {"AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "AWS::URLSuffix": "amazonaws.com"}


@dataclass(frozen=True)
class Function:
    name: str  # logical id in template.yaml
    folder: Path
    module: str
    handler: str
    env: dict[str, str]

    @property
    def code(self) -> str:
        return f"import {self.module}\n{self.module}.{self.handler}"


def _resolve(value: Any, params: dict[str, Any]) -> str:
    """A template value as the deployed function would see it (refs become plausible fakes)."""
    if isinstance(value, str | int | float):
        return str(value)
    if isinstance(value, dict) and "Ref" in value:
        name = value["Ref"]
        if name in _PSEUDO:
            return _PSEUDO[name]
        if name in params:
            return str(params[name].get("Default", ""))
        if "DeadLetter" in name or "Queue" in name:
            return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name}"
        return str(name)
    if isinstance(value, dict) and "Fn::Sub" in value:
        text = value["Fn::Sub"]
        text = text[0] if isinstance(text, list) else text
        return re.sub(r"\$\{([^}]+)\}", lambda m: _resolve({"Ref": m.group(1)}, params), text)
    return ""


def functions() -> list[Function]:
    """Every Python function of template.yaml with its folder, handler and environment."""
    tpl = template()
    params = tpl.get("Parameters", {})
    glob = tpl.get("Globals", {}).get("Function", {})
    found: list[Function] = []
    for name, resource in tpl["Resources"].items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        props = resource["Properties"]
        module, _, handler = props.get("Handler", glob.get("Handler", "")).rpartition(".")
        variables = {
            **glob.get("Environment", {}).get("Variables", {}),
            **props.get("Environment", {}).get("Variables", {}),
        }
        env = {k: _resolve(v, params) for k, v in variables.items()}
        memory = props.get("MemorySize", glob.get("MemorySize", 128))
        env.update(
            {
                "AWS_LAMBDA_FUNCTION_NAME": name,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory),
                "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
                "LAMBDA_TASK_ROOT": str(ROOT / props["CodeUri"]),
            }
        )
        found.append(Function(name, ROOT / props["CodeUri"], module, handler, env))
    return found


def _env(extra: dict[str, str]) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    return {**keep, **FAKE_AWS_ENV, **extra}


def _run(
    code: str, paths: list[str], env: dict[str, str], *flags: str
) -> tuple[float, float, int, str]:
    """(seconds spent in `code`, CPU seconds of it, modules loaded in all, stderr) in a fresh
    interpreter."""
    proc = subprocess.run(
        [sys.executable, "-I", *flags, "-c", _BLOCK + _PROBE.format(paths=paths, code=code)],
        capture_output=True,
        text=True,
        env=env,
        cwd=paths[0] if paths else None,
        timeout=120,
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed")
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("ELAPSED"))
    _, seconds, cpu, modules = line.split()
    return float(seconds), float(cpu), int(modules), proc.stderr


def import_profile(code: str, paths: list[str], env: dict[str, str], top: int = 12) -> str:
    """`python -X importtime` of the import, by top-level package and by slowest import."""
    marker = "import sys; sys.stderr.write('@@BEGIN\\n'); sys.stderr.flush()\n"
    _, _, _, err = _run(marker + code, paths, env, "-X", "importtime")
    lines = err.split("@@BEGIN\n", 1)[-1].splitlines()
    by_package: dict[str, int] = {}
    nested: list[tuple[int, str]] = []
    for ln in lines:
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", ln)
        if not m:
            continue
        self_us, cumulative, indent, module = int(m[1]), int(m[2]), len(m[3]), m[4]
        root = module.split(".")[0]
        by_package[root] = by_package.get(root, 0) + self_us
        if 0 < indent <= 9:  # imported by the handler module, down to four levels below
            nested.append((cumulative, ("  " * ((indent - 1) // 2)) + module))
    total = sum(by_package.values())
    out = [f"    self time by top-level package (total {total / 1000:.1f} ms, this run):"]
    for root, us in sorted(by_package.items(), key=lambda kv: -kv[1])[:top]:
        out.append(f"      {root:<28} {us / 1000:8.1f} ms  {100 * us / max(total, 1):5.1f} %")
    out.append("    slowest imports below the handler module, cumulative (indent = depth):")
    slowest = {m for _, m in sorted(nested, reverse=True)[:top]}
    for us, module in [(us, m) for us, m in nested if m in slowest][::-1]:
        out.append(f"      {module:<40} {us / 1000:8.1f} ms")
    return "\n".join(out)


Variant = tuple[str, list[str], dict[str, str]]  # code, sys.path, environment


def _variants(fns: list[Function], results: list[Result]) -> dict[str, Variant]:
    """The baseline, and per function its handler import and the import + its first record.
    A function whose handler module is missing gets a SKIP row in `results`."""
    layer = [str(LAYER), str(APPS_LAYER)]
    baseline_env = next(iter(fns)).env if fns else {}
    variants: dict[str, Variant] = {"baseline": (BASELINE_CODE, layer, _env(baseline_env))}
    for fn in fns:
        if not (fn.folder / f"{fn.module}.py").exists():
            print(f"  {fn.name}: {fn.folder.relative_to(ROOT)}/{fn.module}.py not found: SKIP")
            results.append(
                Result("cold start", f"{fn.name} import / baseline", float("nan"), TARGET_RATIO)
            )
            continue
        paths = [str(fn.folder), *layer]
        first = FIRST_RECORD.get(fn.name, _clients("dynamodb"))
        variants[fn.name] = (fn.code, paths, _env(fn.env))
        variants[f"{fn.name} +first"] = (f"{fn.code}\n{first}", paths, _env(fn.env))
        note = FIRST_RECORD_NOTE.get(fn.name, "dynamodb client")
        print(f"  '{fn.name} +first' = import + its first record's {note}")
    return variants


def _warm_up(variants: dict[str, Variant], results: list[Result]) -> dict[str, list[float]]:
    """One unrecorded run of each variant (.pyc files, page cache). Returns an empty sample
    list per variant that imports; one that fails gets a row in `results` (but the baseline)."""
    samples: dict[str, list[float]] = {}
    for name, (code, paths, env) in variants.items():
        try:
            _run(code, paths, env)
        except RuntimeError as exc:
            print(f"  {name}: import failed: {exc}")
            if name != "baseline":
                results.append(
                    Result("cold start", f"{name} import / baseline", float("nan"), TARGET_RATIO)
                )
            continue
        samples[name] = []
    return samples


def _sample(
    variants: dict[str, Variant], samples: dict[str, list[float]], runs: int
) -> tuple[dict[str, list[float]], dict[str, int]]:
    """`runs` samples of each variant, shuffled and interleaved, into `samples`. Returns the
    CPU seconds of each sample and the modules each variant loaded."""
    cpu: dict[str, list[float]] = {name: [] for name in samples}
    modules: dict[str, int] = {}
    order = list(samples)
    rng = random.Random(7)
    for _ in range(runs):
        rng.shuffle(order)
        for name in order:
            code, paths, env = variants[name]
            seconds, cpu_seconds, count, _ = _run(code, paths, env)
            samples[name].append(seconds)
            cpu[name].append(cpu_seconds)
            modules[name] = count
    return cpu, modules


def cost_per_million(seconds: float, memory_mb: int) -> float:
    """US dollars per million cold starts that add `seconds` of CPU (measured here, a full
    vCPU) to the billed duration: scaled to the CPU share of `memory_mb` as the other
    benchmarks' cost model does (prices.json), rounded up to the millisecond, at the x86
    GB-second price."""
    lam = prices()["lambda"]
    cpu_share = min(1.0, memory_mb / lam["full_vcpu_at_mb"])
    billed_ms = math.ceil(seconds * 1000 / cpu_share)
    return 1e6 * memory_mb / 1024 * billed_ms / 1000 * float(lam["per_gb_second_x86"])


def _table(
    samples: dict[str, list[float]],
    cpu: dict[str, list[float]],
    modules: dict[str, int],
    results: list[Result],
) -> None:
    base = median(samples["baseline"])
    print(f"  {'':<26} {'min':>7} {'median':>7} {'max':>7}  cpu med  modules  median / baseline")
    for name, values in samples.items():
        ms = [v * 1000 for v in (min(values), median(values), max(values), median(cpu[name]))]
        line = (
            f"  {name:<26} {ms[0]:7.1f} {ms[1]:7.1f} {ms[2]:7.1f}  {ms[3]:7.1f}  {modules[name]:7d}"
        )
        if name == "baseline":
            print(line)
            continue
        ratio = median(values) / base
        if name.endswith(" +first"):
            fn = name.removesuffix(" +first")
            print(f"{line}  {ratio:5.2f}  (informational)")
            results.append(
                Result("cold start", f"{fn} import + first record / baseline", ratio, None, "x")
            )
        else:
            row = Result("cold start", f"{name} import / baseline", ratio, TARGET_RATIO, "x")
            print(f"{line}  {ratio:5.2f}  (<= {TARGET_RATIO}) {row.verdict}")
            results.append(row)


def _costs(fns: list[Function], cpu: dict[str, list[float]], results: list[Result]) -> None:
    """$ per million cold starts from the median CPU time (wall time on this shared machine
    stretches with its load; the CPU a cold start needs does not)."""
    lam = prices()["lambda"]
    print(
        "  $ per million cold starts: import + first record, median CPU time scaled to the CPU"
        f" share of the memory (1 vCPU at {lam['full_vcpu_at_mb']:,} MB),\n"
        f"  at ${lam['per_gb_second_x86'] * 1e6:.4f} per million GB-s; what jobkit's code adds"
        " (the interpreter's and runtime's own start-up are not in it):"
    )
    if "baseline" in cpu:
        baseline = cost_per_million(median(cpu["baseline"]), int(lam["memory_mb"]))
        print(f"    {'baseline (boto3 + sqs client)':<30} ${baseline:,.2f}")
    for fn in fns:
        memory = int(fn.env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"])
        if fn.name not in cpu or f"{fn.name} +first" not in cpu:
            continue
        init = cost_per_million(median(cpu[fn.name]), memory)
        total = cost_per_million(median(cpu[f"{fn.name} +first"]), memory)
        print(
            f"    {fn.name:<30} ${total:,.2f} ({memory} MB; Init, the import alone: ${init:,.2f})"
        )
        results.append(
            Result("cold start", f"{fn.name} $ per million cold starts", total, None, "$")
        )


def run(runs: int = RUNS) -> list[Result]:
    print(
        "\n== 1. Cold start: handler import vs `import boto3; boto3.client('sqs')`, "
        f"{', '.join(NOT_ON_LAMBDA)} blocked as on Lambda =="
    )
    fns = functions()
    results: list[Result] = []
    variants = _variants(fns, results)
    samples = _warm_up(variants, results)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    cpu, modules = _sample(variants, samples, runs)
    if "baseline" not in samples:
        return results
    print(
        f"  {runs} fresh interpreters each, interleaved and shuffled; ms (load average "
        f"{load:.1f} before, {os.getloadavg()[0] if hasattr(os, 'getloadavg') else 0:.1f} after,"
        f" {os.cpu_count()} cores):"
    )
    _table(samples, cpu, modules, results)
    _costs(fns, cpu, results)
    for fn in fns:
        if fn.name not in samples:
            continue
        code, paths, env = variants[fn.name]
        print(f"  what `{fn.module}` pulls in ({fn.name}):")
        print(import_profile(code, paths, env))
        print(
            "    boto3 at import time: "
            + json.dumps(_imports_boto3(code, paths, env))
            + " (True means botocore loads in the cold path)"
        )
    return results


def _imports_boto3(code: str, paths: list[str], env: dict[str, str]) -> bool:
    probe = code + "\nprint('BOTO3', 'boto3' in sys.modules)"
    proc = subprocess.run(
        [sys.executable, "-I", "-c", f"{_BLOCK}sys.path[:0] = {paths!r}\n{probe}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    return "BOTO3 True" in proc.stdout
