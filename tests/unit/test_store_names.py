"""The job log's expressions give a `#name` placeholder to its reserved attribute names only."""

from __future__ import annotations

from moto.dynamodb.parsing.reserved_keywords import ReservedKeywords

from jobkit.store_items import ATTRIBUTES, RESERVED, placeholders


def test_the_reserved_names_are_those_of_the_item_that_dynamodb_reserves() -> None:
    # Given DynamoDB's reserved words (as moto carries AWS's list)
    reserved = {word.lower() for word in ReservedKeywords.get_reserved_keywords()}
    # Then the item's attributes among them are exactly those given placeholders
    assert set(RESERVED) == {name for name in ATTRIBUTES if name in reserved}


def test_only_reserved_names_get_placeholders() -> None:
    # When a claim-like update and condition are written
    (update, condition), names = placeholders(
        "SET state = :running, attempts = attempts + :one REMOVE state_shard",
        "type = :type AND payload = :payload AND attempts < max_attempts",
    )
    # Then state and type are placeholders; the rest (state_shard too) are written as they are
    assert update == "SET #state = :running, attempts = attempts + :one REMOVE state_shard"
    assert condition == "#type = :type AND payload = :payload AND attempts < max_attempts"
    assert names == {"#state": "state", "#type": "type"}
