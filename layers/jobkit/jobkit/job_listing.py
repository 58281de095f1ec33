"""Paged job listings (`AdminCalls.find_jobs`): a walk over the job log's indexes, newest first,
cut into pages by an opaque token. Never a Scan.

Two walks, by where the jobs are found (see `jobkit.store_pages`):

- by state (scheduled, retrying, failed, cancelled): the sparse `by_state` index, its 8
  shards merged on (updated_at, job id), newest first. The order is exact, so a token is the
  position of the last job shown. Updated-time bounds go into the Query's key condition.
- by the job pages (every other listing): pages newest first, and in a page its jobs in
  reverse claim order; the jobs are shown newest enqueued first within each window of
  `size` page entries (the listings' order before paging). A token is the window's start
  and the last job shown of it. A job is listed at the oldest page that names it: in a
  deployed stack the page the job log's stream wrote of its creation (`jobkit.pages_feed`;
  twice if Lambda retried that stream batch); where nothing reads the stream (tests on
  moto), the page of the first worker batch that claimed it (a retry names it again).

What a walk guarantees: paging with the same filters shows every job that does not change
meanwhile exactly once, and by pages also one that changes (it stays at its page). By state,
a job that changes between two pages moves to the top, so it is not shown again and, if not
yet shown, is missed. A page can be shorter than `limit` (even empty) while
`next_token` is set: filters that match few jobs are applied to a bounded read per call.

Entries whose id (or, in a page, type) the filters exclude are skipped as they are read; the
other filters apply to the jobs read. Hand-written: DynamoDB's own `LastEvaluatedKey` pages
one Query, not a merge of eight shards or of several queues' pages.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field, ValidationError

from jobkit import store_walks
from jobkit.errors import InvalidRequestError
from jobkit.models import Job, JobState, iso
from jobkit.store import INDEXED_STATES, JobLog
from jobkit.store_items import INDEX_SHARDS
from jobkit.store_walks import Page

WINDOWS_PER_CALL = 2  # windows of `size` entries one call reads at most
MAX_WINDOW = 1_000  # page entries a window holds at most (unless `limit` is larger)
MAX_TOKEN_CHARS = 4_096
_DIGEST_KEY = b"jobkit.page-token.v1"  # a check against damaged tokens, not a secret

Position = tuple[Any, ...]


@dataclass(frozen=True)
class JobsPage:
    """One page of a listing: its jobs, and the token of the next page (None: no more jobs
    match)."""

    jobs: list[Job]
    next_token: str | None  # None: no more jobs match


@dataclass(frozen=True)
class Filters:
    """What a listing asks for; `state` picks the walk."""

    state: JobState | None = None
    job_type: str | None = None
    queue: str | None = None
    id_prefix: str = ""
    created_after: datetime | None = None
    created_before: datetime | None = None
    updated_after: datetime | None = None
    updated_before: datetime | None = None

    @property
    def by_state(self) -> bool:
        return self.state in INDEXED_STATES

    def matches(self, job: Job) -> bool:
        return (
            (self.state is None or job.state == self.state)
            and (self.job_type is None or job.type == self.job_type)
            and (self.queue is None or job.queue == self.queue)
            and job.id.startswith(self.id_prefix)
            and _within(job.created_at, self.created_after, self.created_before)
            and _within(job.updated_at, self.updated_after, self.updated_before)
        )

    def digest(self) -> str:
        """What a token carries to say which filters it was made for."""
        values = [None if v is None else str(v) for v in self.__dict__.values()]
        return _digest(json.dumps(values))

    def narrowed(self) -> bool:
        """Whether a window reads more entries than a page shows: by state, when filters
        drop jobs read (an entry says only its id and updated time); by pages, whenever a
        filter narrows, so that "newest enqueued first" looks at more of the newest jobs."""
        created = (self.created_after, self.created_before)
        if self.by_state:
            return any((self.job_type, self.queue, *created))
        updated = (self.updated_after, self.updated_before)
        return any((self.state, self.job_type, self.id_prefix, *created, *updated))

    def keeps(self, job_type: str | None, job_id: str) -> bool:
        """Whether an index entry (a job's type, if it says, and id) may be listed."""
        return job_id.startswith(self.id_prefix) and (
            self.job_type is None or job_type in (None, self.job_type)
        )


def _within(moment: datetime, after: datetime | None, before: datetime | None) -> bool:
    return (after is None or moment >= after) and (before is None or moment < before)


@dataclass(frozen=True, order=True)
class Entry:
    """One job as an index names it, at its place in the walk."""

    pos: Position
    job_id: str = field(compare=False)
    job_type: str | None = field(default=None, compare=False)


class Walk(Protocol):
    kind: Literal["state", "pages"]
    sorted_by_walk: bool  # jobs are shown in walk order (else sorted within each window)

    def window(self, at: Position | None, size: int) -> tuple[list[Entry], bool]:
        """The next `size` entries after `at` in walk order, and whether more may follow."""
        ...

    def choose(self, entries: list[Entry], jobs: dict[str, Job]) -> list[tuple[Position, Job]]:
        """The jobs the entries list (each job once), with the key they are shown by."""
        ...


class Cursor(BaseModel):
    """A page token's content."""

    v: Literal[1] = 1
    k: Literal["state", "pages"]
    w: int = Field(ge=1, le=1_000_000)
    at: list[str | int] | None = Field(default=None, max_length=3)
    after: list[str] | None = Field(default=None, max_length=2)
    f: str = Field(max_length=32)


def find(log: JobLog, walk: Walk, filters: Filters, limit: int, token: str | None) -> JobsPage:
    """One page of the jobs `filters` match, newest first, from `token` on."""
    cursor = decode(token, walk.kind, filters) if token is not None else None
    if cursor is not None:
        size, after = cursor.w, tuple(cursor.after) if cursor.after else None
        at: Position | None = tuple(cursor.at) if cursor.at else None
    else:
        size, at, after = window_size(filters, limit), None, None
    found: list[Job] = []
    # a window of narrowing filters reads ten times the page: one new window a call at most
    fresh_windows = 1 if filters.narrowed() else WINDOWS_PER_CALL
    for _ in range(WINDOWS_PER_CALL):
        entries, more = walk.window(at, size)
        fresh_windows -= after is None
        chosen = sorted(_chosen(log, walk, entries, filters), key=lambda c: c[0], reverse=True)
        chosen = [c for c in chosen if after is None or c[0] < after]
        need = limit - len(found)
        if len(chosen) > need:  # the page ends inside this window
            found += [job for _, job in chosen[:need]]
            last = chosen[need - 1][0]
            at, after = (last, None) if walk.sorted_by_walk else (at, last)
            return JobsPage(found, encode(walk.kind, size, at, after, filters))
        found += [job for _, job in chosen]
        if not more:
            return JobsPage(found, None)
        at, after = entries[-1].pos, None
        if len(found) == limit or fresh_windows <= 0:
            break
    return JobsPage(found, encode(walk.kind, size, at, None, filters))


def window_size(filters: Filters, limit: int) -> int:
    """Entries a window reads: `limit`, or ten times as many when filters drop some after
    reading (at most `MAX_WINDOW`, unless `limit` is larger)."""
    return max(limit, min(limit * 10, MAX_WINDOW)) if filters.narrowed() else limit


def _chosen(
    log: JobLog, walk: Walk, entries: list[Entry], filters: Filters
) -> list[tuple[Position, Job]]:
    """The listed jobs of a window that match, read in one BatchGetItem per 100."""
    jobs = log.get_many(e.job_id for e in entries)
    return [(key, job) for key, job in walk.choose(entries, jobs) if filters.matches(job)]


def merge(entries: list[Entry], horizons: list[Position], size: int) -> tuple[list[Entry], bool]:
    """Entries of several sources (shards, queues), newest first, as far as every source was
    read: a source that has more was read down to its horizon, so past the highest horizon an
    entry of another source could be missing."""
    ordered = sorted(entries, reverse=True)
    if horizons:
        cut = max(horizons)
        ordered = [e for e in ordered if e.pos >= cut]
    return ordered[:size], bool(horizons) or len(ordered) > size


class StateWalk:
    """The `by_state` index of one state, its shards merged."""

    kind: Literal["state", "pages"] = "state"
    sorted_by_walk = True

    def __init__(self, log: JobLog, filters: Filters) -> None:
        assert filters.state is not None
        self.log, self.state, self.filters = log, filters.state.value, filters
        lows = [iso(t) for t in (filters.updated_after, filters.created_after) if t]
        high = iso(filters.updated_before) if filters.updated_before else None
        # a job is updated after it is created
        self.bounds = (max(lows) if lows else None, high)

    def window(self, at: Position | None, size: int) -> tuple[list[Entry], bool]:
        below = (str(at[0]), str(at[1])) if at else None
        entries: list[Entry] = []
        horizons: list[Position] = []
        for shard in range(INDEX_SHARDS):
            found, more = store_walks.index_below(
                self.log.table,
                f"{self.state}#{shard}",
                below,
                size,
                self.bounds,
                lambda job_id: self.filters.keeps(None, job_id),
            )
            entries += [Entry(pos, pos[1]) for pos in found]
            if more:  # read through every entry of its last updated_at
                horizons.append((found[-1][0], ""))
        return merge(entries, horizons, size)

    def choose(self, entries: list[Entry], jobs: dict[str, Job]) -> list[tuple[Position, Job]]:
        return [(e.pos, jobs[e.job_id]) for e in entries if e.job_id in jobs]


@dataclass
class _Read:
    """The pages of one queue a window read: every page from `low` to `high` (keys)."""

    pages: dict[str, list[tuple[str, str]]]
    low: str
    high: str | None  # None: up to the newest


class PagesWalk:
    """The job pages of some queues, merged."""

    kind: Literal["state", "pages"] = "pages"
    sorted_by_walk = False

    def __init__(self, pages_table: str, queues: Sequence[str], filters: Filters) -> None:
        self.table, self.queues, self.filters = pages_table, list(queues), filters

        # A job enqueued after `created_after` was claimed, and its page written, after it.
        self.low = iso(filters.created_after) if filters.created_after else None
        self.read: dict[str, _Read] = {}

    def window(self, at: Position | None, size: int) -> tuple[list[Entry], bool]:
        top = str(at[0]) if at else None
        entries: list[Entry] = []
        horizons: list[Position] = []
        for queue in self.queues:
            pages, more = store_walks.pages_below(
                self.table, queue, top, size, self.low, self.filters.keeps
            )
            low = pages[-1][0] if more else (self.low or "")
            self.read[queue] = _Read(dict(pages), low, top)
            for key, jobs in pages:
                for index, (job_type, job_id) in enumerate(jobs):
                    pos = (key, queue, index)
                    if (at is None or pos < at) and self.filters.keeps(job_type, job_id):
                        entries.append(Entry(pos, job_id, job_type))
            if more:
                horizons.append((pages[-1][0], queue, -1))
        return merge(entries, horizons, size)

    def choose(self, entries: list[Entry], jobs: dict[str, Job]) -> list[tuple[Position, Job]]:
        for queue in self.queues:  # what `_lists` looks at below, read at once: a Query at most
            lows = [
                since
                for e in entries
                if e.pos[1] == queue and e.job_id in jobs
                if (since := iso(jobs[e.job_id].created_at)) <= e.pos[0]
            ]
            if lows:
                self._between(queue, min(lows), min(lows))
        chosen: list[tuple[Position, Job]] = []
        for entry in entries:
            job = jobs.get(entry.job_id)
            if job is not None and self._lists(entry, job):
                chosen.append(((iso(job.created_at), job.id), job))
        return chosen

    def _lists(self, entry: Entry, job: Job) -> bool:
        """Whether this entry is the one that lists the job: the oldest page that names it,
        looked for from its creation on (a producer's clock may run ahead: a page older than
        that is not refused, only not looked for)."""
        key, queue, index = entry.pos
        same_page = self.read[queue].pages[key][:index]
        if any(job_id == job.id for _, job_id in same_page):
            return False
        older = self._between(queue, iso(job.created_at), key)
        return not any(job_id == job.id for _, jobs in older for _, job_id in jobs)

    def _between(self, queue: str, low: str, high: str) -> list[Page]:
        """The pages of `queue` from `low` to `high` (excluded), from this window's read; when
        that does not reach down to `low`, the older pages are read and added to it."""
        read = self.read[queue]
        if low < read.low:
            read.pages.update(store_walks.pages_between(self.table, queue, low, read.low))
            read.low = low
        return [(k, jobs) for k, jobs in read.pages.items() if low <= k < high]


def encode(
    kind: Literal["state", "pages"],
    size: int,
    at: Position | None,
    after: Position | None,
    filters: Filters,
) -> str:
    body = Cursor(
        k=kind,
        w=size,
        at=list(at) if at is not None else None,
        after=[str(v) for v in after] if after is not None else None,
        f=filters.digest(),
    ).model_dump(exclude_none=True)
    text = json.dumps(body, separators=(",", ":"), sort_keys=True)
    signed = json.dumps({"c": body, "d": _digest(text)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(signed.encode()).decode().rstrip("=")


def decode(token: str, kind: str, filters: Filters) -> Cursor:
    """The cursor a token holds, if it is whole and was made for these filters; else an
    `InvalidRequestError` saying which."""
    bad = InvalidRequestError(
        "page_token is not a token this listing gave out (damaged or altered): start again "
        "without it"
    )
    if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN_CHARS:
        raise bad
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        outer = json.loads(raw)
        body = outer["c"]
        text = json.dumps(body, separators=(",", ":"), sort_keys=True)
        if outer["d"] != _digest(text):
            raise bad
        cursor = Cursor.model_validate(body)
    except (binascii.Error, ValueError, TypeError, KeyError, ValidationError):
        raise bad from None
    if cursor.f != filters.digest() or cursor.k != kind:
        raise InvalidRequestError(
            "page_token was made for other filters: pass the same filters as the call that "
            "gave it (or start again without a token)"
        )
    if not _shape_ok(cursor):
        raise bad
    return cursor


def _shape_ok(cursor: Cursor) -> bool:
    at, after = cursor.at or [], cursor.after or []
    if cursor.k == "state":
        return (not at or len(at) == 2) and not after and all(isinstance(v, str) for v in at)
    kinds = [type(v) for v in at]
    return (not at or kinds == [str, str, int]) and (not after or len(after) == 2)


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=8, key=_DIGEST_KEY).hexdigest()
