"""`jobkit listing-status`: a listing version's syndication, per platform, from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trustme
from typer.testing import CliRunner

from jobkit_apps.syndication import publish_listing
from jobkit_tools import cli
from jobkit_tools.cli import app
from jobkit_tools.testing import Harness
from syndication_worker.delivery import Sender
from syndication_worker.partners import Registry
from syndication_worker.processors import Runtime, use_runtime, worker
from syndication_worker.ratelimit import RateLimiter
from tests.integration.syndication_support import (
    PARTNERS_PATH,
    RATE_TABLE,
    PartnerServer,
    Reply,
    create_rate_table,
    put_partner,
    write_ca,
)

SECRET = "whsec_Y2xpLXRlc3Qtc2VjcmV0LTAwMDAwMDAwMDA="
LISTING = {"title": "Loft", "price": 1800, "url": "https://example.com/l/9"}
runner = CliRunner()


def test_listing_status_shows_each_platforms_outcome(
    jobkit_harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a listing published to a partner that takes it and one that rejects it
    ca = trustme.CA()
    create_rate_table()
    jobkit_harness.register(worker, function_timeout=60)
    previous = use_runtime(
        Runtime(
            Registry(PARTNERS_PATH, 0),
            RateLimiter(RATE_TABLE),
            Sender(write_ca(ca, tmp_path), allow_private_networks=True),  # partners on loopback
        )
    )
    monkeypatch.setattr(cli.console, "width", 200)
    try:
        with (
            PartnerServer("good", ca, [SECRET]) as good,
            PartnerServer("picky", ca, [SECRET], [Reply(422, {"error": "no photos"})]) as picky,
        ):
            put_partner("good", good.url, [SECRET])
            put_partner("picky", picky.url, [SECRET])
            publish_listing("L-9", 3, LISTING, client=jobkit_harness.client)
            jobkit_harness.run_until_idle()

            # When its status is asked for
            table = runner.invoke(app, ["listing-status", "L-9", "--version", "3"])
            as_json = runner.invoke(app, ["listing-status", "L-9", "--version", "3", "--json"])
            missing = runner.invoke(app, ["listing-status", "L-9", "--version", "4"])
    finally:
        use_runtime(previous)

    # Then the table and the JSON show each platform's state, partner id and error
    assert table.exit_code == 0, table.output
    assert "good-1" in table.output and "no photos" in table.output
    rows = {r["platform"]: r for r in json.loads(as_json.output)["platforms"]}
    assert rows["good"]["state"] == "succeeded" and rows["good"]["response_id"] == "good-1"
    assert rows["picky"]["state"] == "failed"
    # And a version never published is a clear error
    assert missing.exit_code == 1
