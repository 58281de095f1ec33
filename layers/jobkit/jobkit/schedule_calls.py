"""The recurring-schedule calls of `jobkit.client.Jobkit`: declare, read, list, pause,
resume and delete cron and rate schedules (`jobkit.recurring` holds their rules,
`jobkit.schedules` the Scheduler calls)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from jobkit import queues, recurring, schedules
from jobkit.errors import JobkitError, ScheduleNotFoundError
from jobkit.jobs import JobType, get_job_type
from jobkit.models import utcnow
from jobkit.recurring import RecurringSchedule
from jobkit.settings import Settings


class ScheduleCalls:
    """`Jobkit`'s recurring-schedule calls."""

    settings: Settings

    def schedule(
        self,
        name: str,
        cron: str,
        job_type: JobType | str,
        payload: BaseModel | dict[str, Any],
        *,
        timezone: str = "UTC",
        description: str = "",
        enabled: bool | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> RecurringSchedule:
        """Run a job on a cron or rate schedule, in a timezone; the same name again updates it.

        `cron` is AWS's six-field form, with or without `cron(...)` (`"0 2 * * ? *"`: 02:00
        every day), or `rate(...)`. Each run's job id is `<name>@<scheduled time, UTC>`, so a
        run that Scheduler fires twice runs once.

        `enabled`: None keeps an existing schedule's state (declaring a paused schedule again
        does not resume it; a new one is enabled), True or False sets it. `start` and `end`
        (timezone-aware) bound the runs: none before the start, none after the end; a rate
        counts from its start, else from its creation. They belong to the declaration: left
        out, they are removed. A cron that never fires, or a start and end with no run between
        them, is refused. Everything is validated before anything is written.

        Requests: a new schedule is one CreateSchedule, and its answer needs no read (a rate
        counts from its creation, now). An existing one is that CreateSchedule refused, one
        GetSchedule (the state to keep, the creation a rate counts from, the start it has) and
        one UpdateSchedule.
        """
        now = utcnow()
        recurring.check_name(name)
        expression = recurring.normalize(cron, timezone, now)
        jt = get_job_type(job_type)
        body = recurring.target_input(name, jt.name, jt.validate(payload).model_dump(mode="json"))
        group, role = self.settings.require_recurring()
        queue_url = self.settings.queue_url_of(jt.queue)
        dlq_url = self.settings.dead_letter_queue_url_or_none(jt.queue)
        # A start already passed can only be the one the schedule has: read it first.
        existing = schedules.get(name, group) if recurring.start_passed(start, now) else None
        window = recurring.check_window(expression, timezone, start, end, now, existing)
        definition = schedules.recurring_definition(
            name,
            group,
            expression,
            timezone,
            queues.arn_of(queue_url),
            role,
            body,
            queues.arn_of(dlq_url) if dlq_url else None,
            description or f"jobkit: {jt.name}",
            *window,
        )
        made = None
        if existing is None:
            made = schedules.create_recurring(definition, enabled is not False)
        if made is None:  # it exists: update it
            existing = existing or schedules.get(name, group)
            if existing is None:
                raise JobkitError(f"schedule {name!r} was deleted meanwhile: declare it again")
            # Checked again against the schedule as it stands (its creation, its start).
            recurring.check_window(expression, timezone, start, end, now, existing)
            made = schedules.update_recurring(definition, enabled, existing)
        # A new schedule has no CreationDate here: it was created just now, so the next run
        # of a rate is counted from now, within the milliseconds of the call.
        return recurring.from_definition(made, utcnow())

    def get_schedule(self, name: str) -> RecurringSchedule:
        recurring.check_name(name)
        definition = schedules.get(name, self.settings.require_recurring()[0])
        if definition is None:
            raise ScheduleNotFoundError(f"no recurring schedule {name!r}")
        return recurring.from_definition(definition, utcnow())

    def list_schedules(self) -> list[RecurringSchedule]:
        """Every recurring schedule, by name (one GetSchedule each: listing is rare)."""
        group = self.settings.require_recurring()[0]
        found = (schedules.get(name, group) for name in schedules.names(group))
        return [recurring.from_definition(d, utcnow()) for d in found if d is not None]

    def count_one_time_schedules(self) -> int:
        """How many one-time schedules (jobs due in more than 15 minutes) wait in the
        schedule group: one ListSchedules page per 100."""
        return len(schedules.names(self.settings.require_scheduler()[0]))

    def pause_schedule(self, name: str) -> RecurringSchedule:
        """Stop a schedule firing until it is resumed (runs missed meanwhile do not happen)."""
        return self._set_state(name, enabled=False)

    def resume_schedule(self, name: str) -> RecurringSchedule:
        """Let a paused schedule fire again: its next run is the first one after now (the runs
        it missed while paused never happen)."""
        return self._set_state(name, enabled=True)

    def _set_state(self, name: str, enabled: bool) -> RecurringSchedule:
        """One GetSchedule, and an UpdateSchedule only if the state changes (it keeps the whole
        definition, start and end included)."""
        recurring.check_name(name)
        definition = schedules.get(name, self.settings.require_recurring()[0])
        if definition is None:
            raise ScheduleNotFoundError(f"no recurring schedule {name!r}")
        state = "ENABLED" if enabled else "DISABLED"
        if definition.get("State") != state:
            schedules.set_state(definition, enabled)
        return recurring.from_definition({**definition, "State": state}, utcnow())

    def delete_schedule(self, name: str) -> None:
        """Delete a recurring schedule; jobs of runs already fired are not affected."""
        recurring.check_name(name)
        if not schedules.delete(name, self.settings.require_recurring()[0]):
            raise ScheduleNotFoundError(f"no recurring schedule {name!r}")
