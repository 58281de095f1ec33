"""Job types, backoff and redaction: pure behaviour, no AWS."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Iterator

import pytest
from pydantic import BaseModel, ConfigDict, EmailStr, Field

from jobkit import Backoff, JobType, JobValidationError, UnknownJobTypeError
from jobkit.jobs import export_schemas, get_job_type, registered_job_types
from jobkit.redact import mask_email, redact


class Address(BaseModel):
    city: str = Field(min_length=1)


class SignupPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: EmailStr
    count: int = Field(ge=1, description="How many.")
    address: Address | None = None


SIGNUP = JobType("test.unit.signup", SignupPayload, queue="email", max_attempts=4)


# -- Backoff -------------------------------------------------------------------------------


@pytest.mark.parametrize("attempt", range(1, 12))
def test_backoff_stays_within_half_and_full_ceiling(attempt: int) -> None:
    # Given a backoff of base 1 s doubling up to 60 s
    backoff = Backoff(base=1.0, cap=60.0)
    ceiling = min(60.0, 2.0 ** (attempt - 1))
    rng = random.Random(attempt)
    # When many delays are drawn
    delays = [backoff.delay(attempt, rng) for _ in range(500)]
    # Then each is within [ceiling/2, ceiling], and they are spread (jitter), not constant
    assert all(ceiling / 2 <= d <= ceiling for d in delays)
    assert max(delays) - min(delays) > ceiling / 4


def test_backoff_grows_exponentially_until_the_cap() -> None:
    backoff = Backoff(base=0.5, cap=10.0)
    low = [backoff.delay(n, _Extreme(0.0)) for n in range(1, 8)]
    high = [backoff.delay(n, _Extreme(1.0)) for n in range(1, 8)]
    assert high == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert low == [0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


@pytest.mark.parametrize("attempt", [20, 100, 1_100, 10_000])
def test_backoff_respects_the_cap_for_any_attempt(attempt: int) -> None:
    assert 150.0 <= Backoff(base=1.0, cap=300.0).delay(attempt) <= 300.0


def test_backoff_of_attempt_zero_is_the_base() -> None:
    assert 0.5 <= Backoff(base=1.0).delay(0) <= 1.0


class _Extreme(random.Random):
    """A random source stuck at one end of every range."""

    def __init__(self, at: float) -> None:
        super().__init__(0)
        self.at = at

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.at


# -- JobType -------------------------------------------------------------------------------


def test_validate_returns_the_model() -> None:
    model = SIGNUP.validate({"to": "ada@example.com", "count": 2})
    assert isinstance(model, SignupPayload)
    assert model.count == 2
    assert SIGNUP.validate(model) is model


def test_validation_errors_name_each_field_without_the_input() -> None:
    # Given a payload with several bad fields holding personal data
    bad = {"to": "ada-lovelace-secret", "count": "lots-of-them", "address": {"city": ""}}
    # When it is validated
    with pytest.raises(JobValidationError) as caught:
        SIGNUP.validate(bad)
    error = caught.value
    # Then the error names the type and each field (nested ones by path)
    assert error.job_type == "test.unit.signup"
    assert sorted(e.split(":")[0] for e in error.errors) == ["address.city", "count", "to"]
    assert str(error).startswith("invalid payload for test.unit.signup: ")
    # and echoes none of the values
    for value in ("ada-lovelace-secret", "lots-of-them"):
        assert value not in str(error)
        assert all(value not in e for e in error.errors)
    assert error.__cause__ is None and error.__suppress_context__


def test_validation_names_missing_and_unexpected_fields() -> None:
    with pytest.raises(JobValidationError) as caught:
        SIGNUP.validate({"count": 1, "password": "hunter2"})
    assert any(e.startswith("to: Field required") for e in caught.value.errors)
    assert any(e.startswith("password:") for e in caught.value.errors)
    assert "hunter2" not in str(caught.value)


def test_a_payload_that_is_not_an_object_is_reported_as_the_payload() -> None:
    with pytest.raises(JobValidationError) as caught:
        SIGNUP.validate(["not", "a", "dict"])  # type: ignore[arg-type]
    assert caught.value.errors[0].startswith("<payload>:")


def test_a_payload_of_another_model_is_revalidated() -> None:
    class Other(BaseModel):
        to: str
        count: int

    with pytest.raises(JobValidationError):
        SIGNUP.validate(Other(to="x", count=0))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": ""}, "one word"),
        ({"name": "two words"}, "one word"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"timeout": 0}, "timeout"),
    ],
)
def test_job_type_declarations_are_checked(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"name": "test.unit.bad", "payload": SignupPayload, "queue": "q"}
    with pytest.raises(ValueError, match=message):
        JobType(**{**args, **kwargs})  # type: ignore[arg-type]


def test_declared_job_types_are_found_by_name() -> None:
    assert get_job_type("test.unit.signup") is SIGNUP
    assert get_job_type(SIGNUP) is SIGNUP
    assert registered_job_types()["test.unit.signup"] is SIGNUP


def test_unknown_job_type_lists_the_known_names() -> None:
    with pytest.raises(UnknownJobTypeError) as caught:
        get_job_type("test.unit.nope")
    message = str(caught.value)
    assert "'test.unit.nope'" in message
    assert "test.unit.signup" in message
    known = message.split("known: ")[1].rstrip(")").split(", ")
    assert known == sorted(known)


def test_json_schema_of_a_job_type() -> None:
    schema = SIGNUP.json_schema()
    assert schema["title"] == "test.unit.signup"
    assert schema["type"] == "object"
    assert set(schema["properties"]) == {"to", "count", "address"}
    assert schema["properties"]["to"]["format"] == "email"
    assert schema["properties"]["count"]["minimum"] == 1
    assert sorted(schema["required"]) == ["count", "to"]
    assert schema["additionalProperties"] is False


def test_export_schemas_covers_every_declared_type() -> None:
    exported = json.loads(export_schemas())
    assert list(exported) == sorted(exported)
    assert exported["test.unit.signup"] == SIGNUP.json_schema()
    assert set(registered_job_types()) <= set(exported)


# -- redaction -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "masked"),
    [
        ("alice@example.com", "a***@e***.com"),
        ("Bob.Smith+jobs@mail.example.co.uk", "B***@m***.uk"),
        ("x@y.io", "x***@y***.io"),
    ],
)
def test_mask_email(address: str, masked: str) -> None:
    assert mask_email(address) == masked


def test_redact_masks_every_address_in_text() -> None:
    text = "sent to alice@example.com, cc bob@corp.example.org; failed."
    out = redact(text)
    assert out == "sent to a***@e***.com, cc b***@c***.org; failed."
    assert "alice" not in out and "bob@" not in out


def test_redact_leaves_text_without_addresses_alone() -> None:
    assert redact("HTTP 503 from partner @ 12:00") == "HTTP 503 from partner @ 12:00"


def test_redact_cuts_long_text_to_the_limit() -> None:
    out = redact("x" * 5000, limit=100)
    assert len(out) == 100
    assert out.endswith("…")
    assert redact("y" * 100, limit=100) == "y" * 100


def test_redact_masks_before_cutting() -> None:
    # an address straddling the cut must not survive as a readable prefix
    text = "a" * 90 + " carol.secret@example.com"
    out = redact(text, limit=100)
    assert "carol.secret" not in out


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("to josé@example.com", "to j***@e***.com"),
        ("to ada@münchen.de", "to a***@m***.de"),
        ("to 山田@例え.jp", "to 山***@例***.jp"),
        ("to o'brien@example.ie", "to o***@e***.ie"),
        ("to ada@xn--mnchen-3ya.de", "to a***@x***.de"),
    ],
)
def test_redact_masks_addresses_in_any_script(text: str, masked: str) -> None:
    # Given addresses EmailStr accepts with non-ASCII (or punycode) parts, Then they are masked
    assert redact(text) == masked


@pytest.mark.parametrize(
    "text",
    ["a" * 1_000_000, "a@" * 500_000, "x@" + "a." * 500_000, "ada@example.com " * 62_500],
    ids=["no-at", "at-pairs", "dotted-domain", "all-addresses"],
)
def test_redact_looks_at_a_bounded_part_of_any_text(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a 1 MB error text built to make a matcher backtrack, and a spy on the matcher
    from jobkit import redact as redact_module

    seen: list[int] = []
    pattern = redact_module._EMAIL

    class Spy:
        def finditer(self, s: str) -> Iterator[re.Match[str]]:
            seen.append(len(s))
            return pattern.finditer(s)

        def sub(self, repl: Callable[[re.Match[str]], str], s: str) -> str:
            seen.append(len(s))
            return pattern.sub(repl, s)

    monkeypatch.setattr(redact_module, "_EMAIL", Spy())
    # When it is redacted to 1,000 characters
    out = redact(text)
    # Then the matcher saw at most the kept part and one address's length more, and no
    # address is left in clear
    assert seen and max(seen) <= 1000 + 254
    assert len(out) <= 1000
    assert "ada@example.com" not in out
