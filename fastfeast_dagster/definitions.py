"""Everything Dagster loads for FastFeast, assembled from the factories."""

import dagster as dg

from fastfeast_dagster.assets.calendar import calendar_assets
from fastfeast_dagster.resources.warehouse import Warehouse

defs = dg.Definitions(
    assets=[*calendar_assets],
    resources={"warehouse": Warehouse()},
    # One process per run: the multiprocess executor re-imports everything per step and doubles
    # the time of these small runs (notes/dagster_1.13.md §5.4).
    executor=dg.in_process_executor,
)
