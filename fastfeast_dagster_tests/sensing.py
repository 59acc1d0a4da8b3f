"""A sensor evaluated as the daemon evaluates it, on a real instance, and its requests run."""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg


@dataclass
class Pipeline:
    instance: dg.DagsterInstance
    sensor: str
    cursor: str | None = None

    def materialize(
        self, tables: list[str], partition_key: str | None, **kwargs: object
    ) -> dg.ExecuteInProcessResult:
        from fastfeast_dagster.definitions import defs

        keys = [dg.AssetKey(table) for table in tables]
        job = defs.resolve_implicit_job_def_def_for_assets(keys)
        assert job is not None
        result = job.execute_in_process(
            instance=self.instance,
            partition_key=partition_key,
            asset_selection=keys,
            **kwargs,  # type: ignore[arg-type]
        )
        assert result.success
        return result

    def tick(self) -> list[dg.RunRequest]:
        """One evaluation of the sensor, its cursor kept as the daemon keeps it."""
        from fastfeast_dagster.definitions import defs

        with dg.build_sensor_context(
            instance=self.instance, cursor=self.cursor, definitions=defs, resources=defs.resources
        ) as context:
            data = defs.resolve_sensor_def(self.sensor).evaluate_tick(context)
        self.cursor = data.cursor
        return list(data.run_requests or [])

    def run(self, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
        """A request executed as the daemon would: its assets, partition, run config and tags."""
        return self.materialize(
            [key.to_user_string() for key in request.asset_selection or []],
            request.partition_key,
            run_config=request.run_config,
            tags=request.tags,
        )
