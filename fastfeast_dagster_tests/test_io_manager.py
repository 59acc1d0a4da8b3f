"""The Postgres IO manager alone, the way Dagster's own IO-manager tests exercise one: an asset
whose output it writes and a downstream asset whose input it loads, materialized for real."""

from pathlib import Path

import dagster as dg
import pandas as pd
import psycopg

from fastfeast_dagster.batch import LoadBatch, PartitionFile
from fastfeast_dagster.contract import Contract
from fastfeast_dagster.resources.io_manager import PostgresIOManager
from fastfeast_dagster.resources.warehouse import Warehouse
from fastfeast_dagster.validation.prepare import prepare_batch

DAY = "2026-03-02"
TEAMS = "team_id,team_name\n1,Refunds\n2,VIP Support\n0,Nobody\n"


def test_it_writes_a_batch_in_one_go_and_loads_the_partition_back(
    warehouse_url: str, contract: Contract, tmp_path: Path
) -> None:
    path = tmp_path / "input" / "batch" / DAY / "teams.csv"
    path.parent.mkdir(parents=True)
    path.write_text(TEAMS)
    daily = dg.DailyPartitionsDefinition(start_date="2026-01-01")
    warehouse = Warehouse(database_url=warehouse_url)

    @dg.asset(name="dim_team", partitions_def=daily, io_manager_key="warehouse_io_manager")
    def teams(context: dg.AssetExecutionContext) -> LoadBatch:
        files = [PartitionFile(path, "batch", context.partition_key)]
        return prepare_batch("teams", files, contract, tmp_path, b"key")

    @dg.asset(partitions_def=daily, ins={"rows": dg.AssetIn("dim_team")})
    def team_names(rows: pd.DataFrame) -> list[str]:
        return sorted(rows["team_name"])

    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [teams, team_names],
            partition_key=DAY,
            instance=instance,
            resources={"warehouse_io_manager": PostgresIOManager(warehouse=warehouse)},
        )
    assert result.success
    # The downstream asset got exactly the partition's committed rows through load_input.
    assert result.output_for_node("team_names") == ["Refunds", "VIP Support"]
    (materialization,) = result.asset_materializations_for_node("dim_team")
    metadata = {name: value.value for name, value in materialization.metadata.items()}
    assert (metadata["rows_read"], metadata["rows_loaded"], metadata["rows_quarantined"]) == (
        3,
        2,
        1,
    )
    assert metadata["dagster/partition_row_count"] == 2
    with psycopg.connect(warehouse_url) as conn:
        loaded = conn.execute("SELECT team_id, _partition_key FROM dim_team ORDER BY 1").fetchall()
        rejected = conn.execute(
            "SELECT source_row, rejection_rule, asset_key, partition_key FROM quarantine"
        ).fetchall()
        logged = conn.execute(
            "SELECT total_records, valid_records, quarantined FROM pipeline_file_log"
        ).fetchall()
    assert loaded == [(1, DAY), (2, DAY)]
    assert rejected == [(3, "range", "dim_team", DAY)]  # team_id 0 is below its minimum of 1
    assert logged == [(3, 2, 1)]
