"""The local stack's partner endpoints (`partners.py`) in a process of their own.

A partner is another machine: a benchmark that times requests to partners should not share its
GIL with their servers. `PartnerProcess` starts `python -m jobkit_tools.local.partners_process`
with the partners as JSON; the child runs `PartnerEndpoints` (its CA bundle written to a
temporary folder of the parent's), prints one JSON line (CA bundle, URLs, secrets), then
answers each `stats` line on its stdin with one JSON line of every partner's `stats`. EOF on its
stdin stops it. A `PartnerProcess` has what `partners.register` reads (`names`, `secrets`,
`url`), so its partners are registered as the local stack's are.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from jobkit_tools.local.partners import Behaviour, PartnerEndpoints, PartnerStats

STOP_TIMEOUT = 5.0


class PartnerProcess:
    """Partner endpoints in a child process; a context manager (see the module docstring).

    `partners`, `secrets` and `slow_seconds` are `PartnerEndpoints`'. `names` exists from the
    start; `secrets`, `url` and `ca_bundle` from `start()` to `stop()`.
    """

    def __init__(
        self,
        partners: Mapping[str, Behaviour | str],
        *,
        secrets: Mapping[str, str] | None = None,
        slow_seconds: float = 5.0,
    ) -> None:
        self._config = {
            "partners": {name: str(Behaviour(b)) for name, b in partners.items()},
            "secrets": dict(secrets or {}),
            "slow_seconds": slow_seconds,
        }
        self._names = list(partners)
        self._process: subprocess.Popen[str] | None = None
        self._directory: Path | None = None
        self._started: dict[str, Any] = {}

    @property
    def names(self) -> list[str]:
        return list(self._names)

    @property
    def secrets(self) -> dict[str, str]:
        return dict(self._ready()["secrets"])

    @property
    def ca_bundle(self) -> Path:
        """PEM file of the CA that signed every partner's certificate (trust it, verify on)."""
        return Path(self._ready()["ca_bundle"])

    def url(self, name: str) -> str:
        """Where to POST partner `name`'s webhooks."""
        return str(self._ready()["urls"][name])

    def stats(self) -> dict[str, PartnerStats]:
        """What each partner saw so far, by name."""
        process = self._running()
        assert process.stdin is not None
        process.stdin.write("stats\n")
        process.stdin.flush()
        return _read_line(process)  # type: ignore[no-any-return]

    def start(self) -> Self:
        if self._process is not None:
            raise RuntimeError("the partner process is already started")
        self._directory = Path(tempfile.mkdtemp(prefix="jobkit-partners-"))
        config = {**self._config, "directory": str(self._directory)}
        self._process = subprocess.Popen(
            [sys.executable, "-m", __name__, json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=_child_environment(),
        )
        try:
            self._started = _read_line(self._process)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """EOF on the child's stdin (it stops its servers and exits); killed if it does not."""
        process, self._process, self._started = self._process, None, {}
        if process is not None:
            _close(process.stdin)
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            _close(process.stdout)
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _running(self) -> subprocess.Popen[str]:
        if self._process is None:
            raise RuntimeError("the partner process is not started")
        return self._process

    def _ready(self) -> dict[str, Any]:
        self._running()
        return self._started


def _child_environment() -> dict[str, str]:
    """This environment, with jobkit and jobkit_tools importable however this process found
    them (installed, or on a `sys.path` a benchmark set up)."""
    import jobkit
    import jobkit_tools

    roots = [str(Path(m.__file__ or "").resolve().parent.parent) for m in (jobkit, jobkit_tools)]
    inherited = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([*roots, *filter(None, [inherited])])}


def _read_line(process: subprocess.Popen[str]) -> Any:
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        raise RuntimeError(f"the partner process exited (code {process.poll()})")
    return json.loads(line)


def _close(stream: IO[str] | None) -> None:
    if stream is not None:
        with contextlib.suppress(OSError):
            stream.close()


def _answer(value: Any) -> None:
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


def main(argv: list[str]) -> None:
    """The child: start the endpoints, say where they are, answer `stats` until EOF."""
    config = json.loads(argv[0])
    endpoints = PartnerEndpoints(
        config["partners"],
        secrets=config["secrets"],
        slow_seconds=config["slow_seconds"],
        directory=Path(config["directory"]),
    )
    with endpoints:
        names = endpoints.names
        _answer(
            {
                "ca_bundle": str(endpoints.ca_bundle),
                "urls": {name: endpoints.url(name) for name in names},
                "secrets": endpoints.secrets,
            }
        )
        for line in sys.stdin:
            if line.strip() == "stats":
                _answer({name: endpoints.stats(name) for name in names})


if __name__ == "__main__":
    main(sys.argv[1:])
