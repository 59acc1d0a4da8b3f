"""The derived-tables sensor: the calendar, SLA rows and KPI marts follow the data, for every day.

It reads Dagster's event log, not the clock: every fact materialization after its cursor, of any
partition (a past day, a late file, a backfill, an orphan retry, a run from the UI or the CLI),
becomes one run of its day with the derived assets downstream of the facts that loaded, in
dependency order: `ticket_sla` (told which hours loaded), then the marts. A fact load therefore
brings its day's SLA rows and marts up to date in one tick, unless a run of that day's facts or
derived assets is still queued or running: its events then wait in the cursor and go, all in one
run, on the first tick that finds the day idle. A day of hours delivered at once (a catch-up, a
backfill) so gets its derived tables built once or twice rather than once per fact asset and
tick, each a run worker taking a slot from the loads, and two runs of one day's marts never
overlap. A `ticket_sla` materialization that changed tickets of other days (a reopen event a
day late) asks for those days' ticket marts, and a due time passing on a waiting ticket asks for
its day's ticket mart: the view judges it breached from the clock, the mart's counts were made
before. The calendar tables are materialized on the first tick and whenever the contract's
calendar range changes.

Why not Declarative Automation: in dagster 1.13.27 every condition built on
`since_last_handled()` (`eager()` included) drops a parent update that lands between the child's
request and the next evaluation. `SinceCondition` lets the reset (child requested or updated)
win over a trigger of the same evaluation unless both carry timestamps, and the OR of the reset
carries none (`_core/definitions/declarative_automation/operators/since_operator.py`). Its
partition mappings are static too, while a late event's ticket may belong to any day. Here every
materialization is seen once, and run keys built from storage ids let `fastfeast ingest` (with
cursors of its own) and the daemon skip the runs the other made.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import astuple, dataclass, field

import dagster as dg

from fastfeast_dagster.assets.partitions import run_partition_range
from fastfeast_dagster.assets.sla import CHANGED_DAYS, day_of_key
from fastfeast_dagster.contract import Contract
from fastfeast_dagster.resources.warehouse import Warehouse
from fastfeast_dagster.warehouse.sla import SLA_VIEW, days_due_between

DERIVED_SENSOR = "derived_tables_sensor"
# Materializations read per asset and tick; the cursor carries the rest to the next tick.
_PAGE = 1000
# A run in these holds its day's derived run back: it will load more, or is that run already.
_IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


@dataclass
class DerivedCursor:
    seen: dict[str, int] = field(default_factory=dict)  # asset → newest storage id handled
    clock: str | None = None  # the warehouse clock due times were checked up to
    calendar: str | None = None  # the calendar range last materialized
    # Materializations seen whose day was busy: (asset, partition, storage id), for the next tick.
    waiting: list[tuple[str, str, int]] = field(default_factory=list)

    @classmethod
    def loads(cls, text: str | None) -> DerivedCursor:
        cursor = cls(**json.loads(text)) if text else cls()
        cursor.waiting = [(asset, partition, int(id_)) for asset, partition, id_ in cursor.waiting]
        return cursor

    def dumps(self) -> str:
        return json.dumps(
            {
                "seen": self.seen,
                "clock": self.clock,
                "calendar": self.calendar,
                "waiting": self.waiting,
            },
            sort_keys=True,
        )


@dataclass(frozen=True)
class Loaded:
    """A materialization the sensor reacts to."""

    asset: str
    partition: str
    storage_id: int


def day_of_hour(partition: str) -> str:
    """The daily partition of an hourly one: both use the contract's time zone and Dagster's
    default formats (`YYYY-MM-DD-HH:MM`, `YYYY-MM-DD`; pinned by the definitions snapshot)."""
    return partition[:10]


@dataclass(frozen=True)
class Routes:
    """Which derived assets follow which parents, in dependency order."""

    order: tuple[str, ...]  # the derived daily assets, parents first
    parents: dict[str, frozenset[str]]

    def followers(self, updated: set[str]) -> list[str]:
        """The derived assets downstream of `updated`, directly or through each other."""
        chosen: list[str] = []
        for asset in self.order:
            if self.parents[asset] & (updated | set(chosen)):
                chosen.append(asset)
        return chosen


def days_of_run(tags: Mapping[str, str]) -> set[str]:
    """The days a run's partition tags touch: its partition's, or every day of its range."""
    covered = run_partition_range(tags)
    if covered is None:
        return set()
    first, last = (dt.date.fromisoformat(day_of_hour(partition)) for partition in covered)
    return {str(first + dt.timedelta(days=n)) for n in range((last - first).days + 1)}


def hold_busy_days(loaded: Iterable[Loaded], busy: set[str]) -> tuple[list[Loaded], list[Loaded]]:
    """`loaded` split into what can run now and what waits for its day's runs in flight. What
    waits keeps one item per asset and partition, the newest: all a day run needs of it, and the
    cursor stays bounded by the days waiting, not by how often each was loaded."""
    ready: list[Loaded] = []
    newest: dict[tuple[str, str], Loaded] = {}
    for item in loaded:
        key = (item.asset, item.partition)
        if day_of_hour(item.partition) not in busy:
            ready.append(item)
        elif key not in newest or item.storage_id > newest[key].storage_id:
            newest[key] = item
    return ready, sorted(newest.values(), key=lambda item: item.storage_id)


def plan_day_runs(loaded: Sequence[Loaded], routes: Routes) -> list[dg.RunRequest]:
    """One run per day with the derived assets downstream of what loaded that day."""
    by_day: dict[str, list[Loaded]] = {}
    for item in loaded:
        by_day.setdefault(day_of_hour(item.partition), []).append(item)
    requests = []
    for day, items in sorted(by_day.items()):
        assets = routes.followers({item.asset for item in items})
        if not assets:
            continue
        hours = sorted({item.partition for item in items})
        config = {"ops": {SLA_VIEW: {"config": {"hours": hours}}}} if SLA_VIEW in assets else {}
        requests.append(
            dg.RunRequest(
                # The newest event of the day names the run: a sensor with another cursor (the
                # daemon's, `fastfeast ingest`'s) that saw the same events asks for the same run.
                run_key=f"derived:{day}:{max(item.storage_id for item in items)}",
                partition_key=day,
                asset_selection=[dg.AssetKey(asset) for asset in assets],
                run_config=config,
                tags={"fastfeast/reason": "facts-loaded"},
            )
        )
    return requests


def mart_requests(
    days: dict[str, str], asset: str, reason: str, covered: set[str]
) -> list[dg.RunRequest]:
    """`asset` for each day (→ its run-key suffix) not already covered by a day run."""
    return [
        dg.RunRequest(
            run_key=f"{reason}:{day}:{suffix}",
            partition_key=day,
            asset_selection=[dg.AssetKey(asset)],
            tags={"fastfeast/reason": reason},
        )
        for day, suffix in sorted(days.items())
        if day not in covered
    ]


def build_derived_sensor(
    contract: Contract,
    calendar: Sequence[dg.AssetsDefinition],
    derived: Sequence[dg.AssetsDefinition],
    daily: dg.TimeWindowPartitionsDefinition,
) -> dg.SensorDefinition:
    """`derived` are daily assets in dependency order; their fact parents are watched."""
    parents = {
        key.to_user_string(): frozenset(dep.to_user_string() for dep in deps)
        for assets_def in derived
        for key, deps in assets_def.asset_deps.items()
    }
    routes = Routes(tuple(parents), parents)
    watched = set().union(*parents.values())
    facts = sorted(spec.table for spec in contract.facts.values() if spec.table in watched)
    # The mart that reads ticket_sla: rebuilt for the other days a ticket_sla run changed.
    (ticket_mart,) = routes.followers({SLA_VIEW}) if SLA_VIEW in parents else (None,)
    calendar_keys = [key for assets_def in calendar for key in assets_def.keys]
    calendar_range = f"{contract.calendar.first_date}..{contract.calendar.last_date}"
    held_by = {dg.AssetKey(asset) for asset in watched | set(parents)}

    @dg.sensor(
        name=DERIVED_SENSOR,
        description=(
            "After fact loads of any day, runs that day's ticket_sla and KPI marts; rebuilds a "
            "ticket mart when a late event changed another day's tickets or a due time passed "
            "on a waiting ticket; materializes the calendar tables once per calendar range."
        ),
        minimum_interval_seconds=contract.sensors.minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        asset_selection=[*calendar_keys, *(dg.AssetKey(asset) for asset in parents)],
    )
    def derived_tables_sensor(
        context: dg.SensorEvaluationContext, warehouse: Warehouse
    ) -> dg.SensorResult:
        cursor = DerivedCursor.loads(context.cursor)
        requests: list[dg.RunRequest] = []
        if cursor.calendar != calendar_range and calendar_keys:
            requests.append(
                dg.RunRequest(run_key=f"calendar:{calendar_range}", asset_selection=calendar_keys)
            )
            cursor.calendar = calendar_range
        loaded = [Loaded(*item) for item in cursor.waiting] + [
            Loaded(fact, record.partition_key, record.storage_id)
            for fact in facts
            for record in _records_since(context, cursor, fact)
            if record.partition_key is not None
        ]
        ready, waiting = hold_busy_days(loaded, _busy_days(context, held_by))
        cursor.waiting = [astuple(item) for item in waiting]
        day_runs = plan_day_runs(ready, routes)
        requests += day_runs
        if ticket_mart is not None:
            covered = {
                str(run.partition_key)
                for run in day_runs
                if dg.AssetKey(ticket_mart) in (run.asset_selection or [])
            }
            changed = _days_changed_elsewhere(context, cursor, ticket_mart)
            changed = {day: key for day, key in changed.items() if daily.has_partition_key(day)}
            requests += mart_requests(changed, ticket_mart, "sla-days", covered)
            with warehouse.connect() as conn:
                since = dt.datetime.fromisoformat(cursor.clock) if cursor.clock else None
                due, until = days_due_between(conn, warehouse.contract, since)
            cursor.clock = until.isoformat()
            judged = {day_of_key(key) for key in due}
            judged = {day for day in judged if daily.has_partition_key(day)}
            requests += mart_requests(
                dict.fromkeys(judged, cursor.clock), ticket_mart, "sla-clock", covered
            )
        return dg.SensorResult(
            run_requests=requests,
            cursor=cursor.dumps(),
            skip_reason=None
            if requests
            else (
                f"{len(waiting)} fact materialization(s) wait for their day's runs in flight"
                if waiting
                else "no facts loaded and no due time passed"
            ),
        )

    return derived_tables_sensor


def _busy_days(context: dg.SensorEvaluationContext, assets: set[dg.AssetKey]) -> set[str]:
    """Days with a run of `assets` queued or running."""
    runs = context.instance.get_runs(dg.RunsFilter(statuses=_IN_FLIGHT))
    return {
        day
        for run in runs
        if run.asset_selection is not None and run.asset_selection & assets
        for day in days_of_run(run.tags)
    }


def _records_since(
    context: dg.SensorEvaluationContext, cursor: DerivedCursor, asset: str
) -> Sequence[dg.EventLogRecord]:
    """`asset`'s materializations after the cursor (one page); moves the cursor past them."""
    after = cursor.seen.get(asset)
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), after_storage_id=after),
        limit=_PAGE,
        ascending=True,
    ).records
    if records:
        cursor.seen[asset] = records[-1].storage_id
    return records


def _days_changed_elsewhere(
    context: dg.SensorEvaluationContext, cursor: DerivedCursor, mart: str
) -> dict[str, str]:
    """Days (→ the storage id of the ticket_sla materialization) whose SLA rows changed and
    whose mart did not run with them."""
    days: dict[str, str] = {}
    for record in _records_since(context, cursor, SLA_VIEW):
        materialization = record.asset_materialization
        entry = materialization.metadata.get(CHANGED_DAYS) if materialization else None
        run = context.instance.get_run_by_id(record.run_id)
        ran_with_mart = run is not None and dg.AssetKey(mart) in (run.asset_selection or set())
        for day in entry.value if isinstance(entry, dg.JsonMetadataValue) else []:
            if not (ran_with_mart and day == record.partition_key):
                days[str(day)] = str(record.storage_id)
    return days
