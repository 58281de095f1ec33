"""Cold start: import each function's handler module in a fresh interpreter, vs boto3 + a client.

Each sample is a new subprocess of this virtualenv's Python with the environment a deployed
function has (from template.yaml) and sys.path = [function folder, layers], the way Lambda puts
/var/task and /opt/python first. The time is taken inside the subprocess around the import,
so interpreter start-up (the same for both) is left out. Runs are interleaved and shuffled,
and the medians compared. One unrecorded warm-up run of each writes the .pyc files first.
"""

from __future__ import annotations

import json
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
    template,
)

TARGET_RATIO = 1.3
RUNS = 15

_PROBE = """
import sys, time
sys.path[:0] = {paths!r}
t0 = time.perf_counter()
{code}
t1 = time.perf_counter()
print("ELAPSED", t1 - t0, len(sys.modules))
"""

BASELINE_CODE = 'import boto3\nboto3.client("sqs")'
# The boto3 clients a function's first happy-path record creates (jobkit makes them lazily).
FIRST_RECORD_CLIENTS = {"EmailFunction": ("dynamodb", "sesv2")}


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


def _run(code: str, paths: list[str], env: dict[str, str], *flags: str) -> tuple[float, int, str]:
    """(seconds spent in `code`, modules loaded in all, stderr) in a fresh interpreter."""
    proc = subprocess.run(
        [sys.executable, "-I", *flags, "-c", _PROBE.format(paths=paths, code=code)],
        capture_output=True,
        text=True,
        env=env,
        cwd=paths[0] if paths else None,
        timeout=120,
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed")
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("ELAPSED"))
    _, seconds, modules = line.split()
    return float(seconds), int(modules), proc.stderr


def import_profile(code: str, paths: list[str], env: dict[str, str], top: int = 12) -> str:
    """`python -X importtime` of the import, by top-level package and by slowest import."""
    marker = "import sys; sys.stderr.write('@@BEGIN\\n'); sys.stderr.flush()\n"
    _, _, err = _run(marker + code, paths, env, "-X", "importtime")
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
    """The baseline, and per function its handler import and the import + its first record's
    clients. A function whose handler module is missing gets a SKIP row in `results`."""
    layer = [str(LAYER), str(APPS_LAYER)]
    baseline_env = next(iter(fns)).env if fns else {}
    variants: dict[str, Variant] = {"baseline": (BASELINE_CODE, layer, _env(baseline_env))}
    for fn in fns:
        if not (fn.folder / f"{fn.module}.py").exists():
            print(f"  {fn.name}: {fn.folder.relative_to(ROOT)}/{fn.module}.py not found: SKIP")
            results.append(Result("cold start", f"{fn.name} import / baseline", float("nan"), 1.3))
            continue
        variants[fn.name] = (fn.code, [str(fn.folder), *layer], _env(fn.env))
        clients = FIRST_RECORD_CLIENTS.get(fn.name, ("dynamodb",))
        first = "\nfrom jobkit import aws\n" + "\n".join(f"aws.client({c!r})" for c in clients)
        variants[f"{fn.name} +clients"] = (
            fn.code + first,
            [str(fn.folder), *layer],
            _env(fn.env),
        )
        print(f"  '{fn.name} +clients' = handler import + {', '.join(clients)} clients (lazy,")
        print("    made by the first record: what the first invocation adds, informational)")
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
) -> dict[str, int]:
    """`runs` samples of each variant, shuffled and interleaved. Returns the modules each
    loaded."""
    modules: dict[str, int] = {}
    order = list(samples)
    rng = random.Random(7)
    for _ in range(runs):
        rng.shuffle(order)
        for name in order:
            code, paths, env = variants[name]
            seconds, count, _ = _run(code, paths, env)
            samples[name].append(seconds)
            modules[name] = count
    return modules


def _report_ratio(
    name: str, ratio: float, variant: Variant, module: str, results: list[Result]
) -> None:
    if name.endswith("+clients"):
        print(f"  ratio {name} / baseline = {ratio:.2f}  (informational)")
        results.append(Result("cold start", f"{name} / baseline", ratio, None, "x"))
        return
    print(f"  ratio {name} / baseline = {ratio:.2f}  (target <= {TARGET_RATIO})")
    results.append(Result("cold start", f"{name} import / baseline", ratio, TARGET_RATIO, "x"))
    code, paths, env = variant
    print(f"  what `{module}` pulls in ({name}):")
    print(import_profile(code, paths, env))
    print(
        "    boto3 at import time: "
        + json.dumps(_imports_boto3(code, paths, env))
        + " (True means botocore loads in the cold path)"
    )


def run(runs: int = RUNS) -> list[Result]:
    print("\n== 1. Cold start: handler import vs `import boto3; boto3.client('sqs')` ==")
    fns = functions()
    results: list[Result] = []
    variants = _variants(fns, results)
    samples = _warm_up(variants, results)
    modules = _sample(variants, samples, runs)
    if "baseline" not in samples:
        return results
    base = median(samples["baseline"])
    print(f"  {runs} fresh interpreters each, interleaved; medians (min-max):")
    for name, values in samples.items():
        print(
            f"  {name:<22} {median(values) * 1000:7.1f} ms  "
            f"({min(values) * 1000:.1f}-{max(values) * 1000:.1f})  {modules[name]} modules loaded"
        )
    module = fns[0].module if fns else ""
    for name, values in samples.items():
        if name != "baseline":
            _report_ratio(name, median(values) / base, variants[name], module, results)
    return results


def _imports_boto3(code: str, paths: list[str], env: dict[str, str]) -> bool:
    probe = code + "\nprint('BOTO3', 'boto3' in sys.modules)"
    proc = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys\nsys.path[:0] = {paths!r}\n{probe}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    return "BOTO3 True" in proc.stdout
