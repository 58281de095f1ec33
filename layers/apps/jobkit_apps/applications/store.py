"""The applications table: each applicant's documents record and reminder sequence.

The only module that talks to that table (`models` has the records). The reminders worker
reads the record before each step; producers put applications and mark their documents
complete. Every change to the sequence is one conditional write, so a start, a step and a
cancel that race never both win.

Item layout (attribute -> meaning), key `applicant_id`:
  email, name, timezone, upload_url   the applicant (email is personal data: never logged)
  missing_documents                   list of document names still missing
  documents_complete                  true once nothing is missing
  updated_at                          ISO time of the last change to the application
  sequence_id                         the current (or last) reminder sequence
  sequence_state                      active | completed | cancelled
  sequence_step                       while active: the pending step (1-based); after: the last
  sequence_job_id                     job id of the pending step (the one `cancel` cancels)
  sequence_advanced_by                job id of the step that scheduled the pending one
  sequence_next_due                   ISO time the pending step is due
  sequence_plan                       JSON of the plan (start, timezone, send time, offsets)
  sequence_reason                     why it ended
  sequence_started_at, sequence_updated_at
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError as PydanticValidationError

from jobkit import aws
from jobkit.errors import ConfigurationError
from jobkit.items import conflict_item as _conflict_item
from jobkit.items import n as _n
from jobkit.items import plain as _plain
from jobkit.items import s as _s
from jobkit.jobs import describe_validation_error
from jobkit.models import iso, utcnow
from jobkit_apps.applications.models import (
    Application,
    ApplicationNotFoundError,
    InvalidApplicationError,
    Plan,
    Sequence,
    SequenceState,
    get_applications_settings,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

# -- item <-> model ------------------------------------------------------------------------


def sequence_from_item(item: dict[str, Any]) -> Sequence | None:
    if "sequence_id" not in item:
        return None
    get = {k: _plain(v) for k, v in item.items()}
    return Sequence(
        applicant_id=get["applicant_id"],
        id=get["sequence_id"],
        state=SequenceState(get["sequence_state"]),
        step=get["sequence_step"],
        plan=Plan.model_validate_json(get["sequence_plan"]),
        job_id=get.get("sequence_job_id"),
        next_due=get.get("sequence_next_due"),
        advanced_by=get.get("sequence_advanced_by"),
        reason=get.get("sequence_reason"),
        started_at=get["sequence_started_at"],
        updated_at=get["sequence_updated_at"],
    )


def application_from_item(item: dict[str, Any]) -> Application:
    get = {k: _plain(v) for k, v in item.items()}
    return Application(
        applicant_id=get["applicant_id"],
        email=get["email"],
        name=get.get("name", ""),
        timezone=get.get("timezone", "UTC"),
        missing_documents=get.get("missing_documents", []),
        documents_complete=bool(get.get("documents_complete", False)),
        upload_url=get.get("upload_url"),
        sequence=sequence_from_item(item),
    )


def _missing_table(table: str, exc: Exception) -> Exception:
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError) and exc.response["Error"]["Code"] == (
        "ResourceNotFoundException"
    ):
        return ConfigurationError(
            f"applications table {table!r} does not exist: set JOBKIT_APPLICATIONS_TABLE "
            "(stack output ApplicationsTableName)"
        )
    return exc


# -- the adapter ---------------------------------------------------------------------------


class Applications:
    """Adapter over the applications table."""

    def __init__(self, table: str) -> None:
        self.table = table

    def get(self, applicant_id: str) -> Application | None:
        """The record as it is now (a consistent read), or None."""
        try:
            response = aws.dynamodb().get_item(
                TableName=self.table,
                Key={"applicant_id": _s(applicant_id)},
                ConsistentRead=True,
            )
        except Exception as exc:
            raise _missing_table(self.table, exc) from None
        item = response.get("Item")
        return application_from_item(item) if item else None

    def put(self, application: Application) -> Application:
        """Create or update the applicant's fields; a running sequence is left as it is."""
        names = ["email", "name", "timezone", "missing_documents", "documents_complete"]
        values: dict[str, AttributeValueTypeDef] = {
            ":email": _s(str(application.email)),
            ":name": _s(application.name),
            ":timezone": _s(application.timezone),
            ":missing_documents": {"L": [_s(d) for d in application.missing_documents]},
            ":documents_complete": {"BOOL": application.documents_complete},
            ":updated_at": _s(iso(utcnow())),
        }
        update = "SET " + ", ".join(f"#{n} = :{n}" for n in [*names, "updated_at"])
        attribute_names = {f"#{n}": n for n in [*names, "updated_at", "upload_url"]}
        if application.upload_url is not None:
            values[":upload_url"] = _s(str(application.upload_url))
            update += ", #upload_url = :upload_url"
        else:
            update += " REMOVE #upload_url"
        response = self._update(
            application.applicant_id, update, attribute_names, values, None, "ALL_NEW"
        )
        return application_from_item(response["Attributes"])

    def complete_documents(self, applicant_id: str) -> Application:
        """Nothing is missing any more. The sequence ends at its next step, sending nothing."""
        from botocore.exceptions import ClientError

        try:
            response = self._update(
                applicant_id,
                "SET documents_complete = :true, missing_documents = :none, updated_at = :now",
                {},
                {":true": {"BOOL": True}, ":none": {"L": []}, ":now": _s(iso(utcnow()))},
                "attribute_exists(applicant_id)",
                "ALL_NEW",
            )
        except ClientError as exc:
            _conflict_item(exc)
            raise ApplicationNotFoundError(f"no application {applicant_id!r}") from None
        return application_from_item(response["Attributes"])

    def start(self, sequence: Sequence) -> tuple[bool, Application | None]:
        """Make `sequence` the applicant's active one unless one is active already.

        (True, record) when it started; (False, record as it is) when another one is active;
        (False, None) when there is no such applicant.
        """
        values = {
            ":active": _s(SequenceState.ACTIVE.value),
            ":id": _s(sequence.id),
            ":step": _n(sequence.step),
            ":job": _s(sequence.job_id or ""),
            ":due": _s(iso(sequence.next_due or sequence.plan.due(sequence.step))),
            ":plan": _s(sequence.plan.model_dump_json()),
            ":now": _s(iso(sequence.started_at)),
        }
        return self._sequence_write(
            sequence.applicant_id,
            "SET sequence_id = :id, sequence_state = :active, sequence_step = :step, "
            "sequence_job_id = :job, sequence_next_due = :due, sequence_plan = :plan, "
            "sequence_started_at = :now, sequence_updated_at = :now "
            "REMOVE sequence_advanced_by, sequence_reason",
            values,
            "attribute_exists(applicant_id) AND "
            "(attribute_not_exists(sequence_state) OR sequence_state <> :active)",
        )

    def advance(
        self, sequence: Sequence, from_job: str, to_job: str, step: int, due: datetime
    ) -> tuple[bool, Application | None]:
        """The step `from_job` hands over to `to_job` (step `step`, due at `due`), if it is
        still the pending step of the active sequence."""
        return self._sequence_write(
            sequence.applicant_id,
            "SET sequence_step = :step, sequence_job_id = :to, sequence_advanced_by = :job, "
            "sequence_next_due = :due, sequence_updated_at = :now",
            {
                **self._pending(sequence, from_job),
                ":step": _n(step),
                ":to": _s(to_job),
                ":due": _s(iso(due)),
            },
            self._is_pending,
        )

    def rekey(self, sequence: Sequence, old_job: str, new_job: str, by_job: str) -> bool:
        """Point the sequence at `new_job` instead of `old_job`, a pending step whose message
        could not be sent (its id is spent in the job log)."""
        done, _ = self._sequence_write(
            sequence.applicant_id,
            "SET sequence_job_id = :to, sequence_updated_at = :now",
            {**self._pending(sequence, old_job), ":to": _s(new_job), ":by": _s(by_job)},
            self._is_pending + " AND sequence_advanced_by = :by",
        )
        return done

    def finish(
        self, sequence: Sequence, job_id: str, state: SequenceState, reason: str
    ) -> tuple[bool, Application | None]:
        """End the active sequence from its pending step `job_id`."""
        return self._sequence_write(
            sequence.applicant_id,
            "SET sequence_state = :end, sequence_reason = :reason, sequence_updated_at = :now "
            "REMOVE sequence_next_due",
            {
                **self._pending(sequence, job_id),
                ":end": _s(state.value),
                ":reason": _s(reason),
            },
            self._is_pending,
        )

    def cancel(self, applicant_id: str, reason: str) -> tuple[bool, Application | None]:
        """Cancel the active sequence, whichever step it is at."""
        return self._sequence_write(
            applicant_id,
            "SET sequence_state = :cancelled, sequence_reason = :reason, "
            "sequence_updated_at = :now REMOVE sequence_next_due",
            {
                ":active": _s(SequenceState.ACTIVE.value),
                ":cancelled": _s(SequenceState.CANCELLED.value),
                ":reason": _s(reason),
                ":now": _s(iso(utcnow())),
            },
            "sequence_state = :active",
        )

    # -- helpers ---------------------------------------------------------------------------

    _is_pending = "sequence_id = :id AND sequence_state = :active AND sequence_job_id = :job"

    @staticmethod
    def _pending(sequence: Sequence, job_id: str) -> dict[str, AttributeValueTypeDef]:
        return {
            ":id": _s(sequence.id),
            ":active": _s(SequenceState.ACTIVE.value),
            ":job": _s(job_id),
            ":now": _s(iso(utcnow())),
        }

    def _sequence_write(
        self,
        applicant_id: str,
        update: str,
        values: dict[str, AttributeValueTypeDef],
        condition: str,
    ) -> tuple[bool, Application | None]:
        from botocore.exceptions import ClientError

        try:
            response = self._update(applicant_id, update, {}, values, condition, "ALL_NEW")
        except ClientError as exc:
            old = _conflict_item(exc)
            return False, application_from_item(old) if old else None
        return True, application_from_item(response["Attributes"])

    def _update(
        self,
        applicant_id: str,
        update: str,
        names: dict[str, str],
        values: dict[str, AttributeValueTypeDef],
        condition: str | None,
        returns: str,
    ) -> Any:
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "Key": {"applicant_id": _s(applicant_id)},
            "UpdateExpression": update,
            "ExpressionAttributeValues": values,
            "ReturnValues": returns,
        }
        if names:
            kwargs["ExpressionAttributeNames"] = names
        if condition:
            kwargs["ConditionExpression"] = condition
            kwargs["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        try:
            return aws.dynamodb().update_item(**kwargs)
        except Exception as exc:
            raise _missing_table(self.table, exc) from None


# -- what producers call -------------------------------------------------------------------


def default_applications() -> Applications:
    """The adapter on the table named by `JOBKIT_APPLICATIONS_TABLE`."""
    return Applications(get_applications_settings().require_table())


def _validated(**fields: Any) -> Application:
    try:
        return Application.model_validate(fields)
    except PydanticValidationError as exc:
        raise InvalidApplicationError(
            "invalid application: " + "; ".join(describe_validation_error(exc))
        ) from None


@aws.service_errors
def put_application(
    applicant_id: str,
    *,
    email: str,
    name: str = "",
    timezone: str = "UTC",
    missing_documents: list[str] | tuple[str, ...] = (),
    upload_url: str | None = None,
    applications: Applications | None = None,
) -> Application:
    """Create or update an application (one write). Its documents are complete when none are
    missing. A reminder sequence already running is kept, and reminds of the new list."""
    application = _validated(
        applicant_id=applicant_id,
        email=email,
        name=name,
        timezone=timezone,
        missing_documents=list(missing_documents),
        documents_complete=not missing_documents,
        upload_url=upload_url,
    )
    return (applications or default_applications()).put(application)


@aws.service_errors
def mark_documents_complete(
    applicant_id: str, *, applications: Applications | None = None
) -> Application:
    """Nothing is missing any more (one write): the reminder sequence ends at its next step
    without sending. `ApplicationNotFoundError` if there is no such application."""
    return (applications or default_applications()).complete_documents(applicant_id)


@aws.service_errors
def get_application(
    applicant_id: str, *, applications: Applications | None = None
) -> Application | None:
    return (applications or default_applications()).get(applicant_id)
