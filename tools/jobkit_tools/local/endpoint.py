"""Where the local stack's AWS is: moto's server, its endpoint, region and dummy credentials."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

log = logging.getLogger("jobkit.local")


class LocalStackError(Exception):
    """The local stack could not start or deploy; the message says which step and why."""


REGION = "us-east-1"


DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}


def base_env(endpoint_url: str) -> dict[str, str]:
    """Environment that points every boto3 client of a process at moto, and nothing else."""
    return {
        **DUMMY_CREDENTIALS,
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        # A developer's ~/.aws must not change what the local stack does (profiles, retries).
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }


def client(service: str, endpoint_url: str) -> Any:
    """A boto3 client on moto (typed `Any`: callers use several services generically)."""
    make: Any = boto3.client  # its overloads want a literal service name
    return make(
        service,
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=DUMMY_CREDENTIALS["AWS_SESSION_TOKEN"],
        config=Config(retries={"mode": "standard", "max_attempts": 3}),
    )


class MotoServer:
    """Moto's server in a child process on a free loopback port (see `motoserver.py`)."""

    def __init__(self, log_path: Path | None = None) -> None:
        self.log_path = log_path
        self.process: subprocess.Popen[str] | None = None
        self.endpoint_url = ""

    def start(self, timeout: float = 30.0) -> str:
        """Start the server and return its endpoint URL once it listens."""
        script = Path(__file__).with_name("motoserver.py")
        stderr: Any = subprocess.DEVNULL
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            stderr = self.log_path.open("a", encoding="utf-8")
        env = {**os.environ, **base_env("")}
        env.pop("AWS_ENDPOINT_URL")
        self.process = subprocess.Popen(
            [sys.executable, "-P", str(script)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=env,
            # Its own session: a Ctrl-C in the terminal reaches the dev process only, which
            # then stops the emulator last, after the workers that still talk to it.
            start_new_session=True,
        )
        if stderr is not subprocess.DEVNULL:
            stderr.close()
        line = _readline_with_timeout(self.process, timeout)
        if not line:
            self.stop()
            raise LocalStackError("moto server did not start (see its log)")
        port = int(json.loads(line)["port"])
        self.endpoint_url = f"http://127.0.0.1:{port}"
        return self.endpoint_url

    def stop(self, timeout: float = 5.0) -> None:
        """Close its stdin (it exits on EOF); kill it if it does not."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def _readline_with_timeout(process: subprocess.Popen[str], timeout: float) -> str:
    """First stdout line of a child, or "" if it exits or stays silent for `timeout` s."""
    import selectors

    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            return ""
    return process.stdout.readline()
