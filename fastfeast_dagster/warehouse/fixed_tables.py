"""The warehouse tables no source file describes: calendar, audit trail, alert log, KPI marts.

Each is written out once here as a `CREATE TABLE {schema}.<name>` script (with its indexes and
comments); `ddl.py` runs the script of every table the warehouse still lacks.
"""

_CALENDAR_DDL = """
CREATE TABLE {schema}.dim_date (
    date_key integer PRIMARY KEY,
    full_date date NOT NULL UNIQUE,
    year smallint NOT NULL,
    quarter smallint NOT NULL,
    month smallint NOT NULL,
    month_name text NOT NULL,
    iso_week smallint NOT NULL,
    day_of_week smallint NOT NULL,
    day_of_month smallint NOT NULL,
    day_of_year smallint NOT NULL,
    day_name text NOT NULL,
    is_weekend boolean NOT NULL
);
COMMENT ON COLUMN {schema}.dim_date.day_of_week IS 'ISO day of week: Monday = 1 … Sunday = 7';
CREATE TABLE {schema}.dim_time (
    time_key integer PRIMARY KEY,
    full_time time NOT NULL UNIQUE,
    hour smallint NOT NULL,
    minute smallint NOT NULL,
    am_pm text NOT NULL,
    shift text NOT NULL
);
"""

# The audit trail's rows carry the load that wrote them and, once a later load of the same asset
# partition replaces them, when and by which run (`audit._supersede_and_insert` relies on these).
_OPERATIONAL_DDL = """
CREATE TABLE {schema}.quarantine (
    quarantine_id bigserial PRIMARY KEY,
    source_file text NOT NULL,
    source_path text NOT NULL,
    source_table text NOT NULL,
    source_row integer,
    rejection_stage text NOT NULL
        CHECK (rejection_stage IN ('file', 'schema', 'records', 'orphan')),
    rejection_rule text NOT NULL,
    rejection_column text,
    rejection_reason text NOT NULL,
    reasons jsonb NOT NULL DEFAULT '[]'::jsonb,
    raw_data jsonb NOT NULL,
    {load_owner}
    quarantined_at timestamptz NOT NULL DEFAULT now(),
    {superseded},
    resolved_at timestamptz,
    resolved_by_run text
);
COMMENT ON COLUMN {schema}.quarantine.source_row IS
    '1-based data row in the source file; NULL when the whole file was rejected';
COMMENT ON COLUMN {schema}.quarantine.reasons IS
    'every rule the row failed, as [{{stage, rule, column, reason}}], rejection_* hold the first';
COMMENT ON COLUMN {schema}.quarantine.superseded_at IS
    'set when a later run of the same asset partition replaced this row';
COMMENT ON COLUMN {schema}.quarantine.resolved_at IS
    'set when the orphan retry loaded the row after its parent arrived';
CREATE INDEX IF NOT EXISTS idx_quarantine_partition
    ON {schema}.quarantine (asset_key, partition_key) WHERE superseded_at IS NULL;
CREATE INDEX IF NOT EXISTS idx_quarantine_open_orphans
    ON {schema}.quarantine (source_table, quarantined_at)
    WHERE rejection_stage = 'orphan' AND superseded_at IS NULL AND resolved_at IS NULL;
CREATE INDEX IF NOT EXISTS idx_quarantine_stage ON {schema}.quarantine (rejection_stage);
CREATE INDEX IF NOT EXISTS idx_quarantine_source_table ON {schema}.quarantine (source_table);
CREATE INDEX IF NOT EXISTS idx_quarantine_quarantined_at ON {schema}.quarantine (quarantined_at);

CREATE TABLE {schema}.true_orphan (
    orphan_id bigserial PRIMARY KEY,
    quarantine_id bigint NOT NULL UNIQUE REFERENCES {schema}.quarantine (quarantine_id),
    source_file text NOT NULL,
    source_table text NOT NULL,
    partition_key text NOT NULL,
    unresolved_fk text NOT NULL,
    raw_data jsonb NOT NULL,
    first_seen_at timestamptz NOT NULL,
    promoted_at timestamptz NOT NULL DEFAULT now(),
    retry_count smallint NOT NULL DEFAULT 0,
    last_retry_at timestamptz
);
CREATE INDEX IF NOT EXISTS idx_true_orphan_unresolved_fk ON {schema}.true_orphan (unresolved_fk);
CREATE INDEX IF NOT EXISTS idx_true_orphan_first_seen_at ON {schema}.true_orphan (first_seen_at);

CREATE TABLE {schema}.pipeline_file_log (
    log_id bigserial PRIMARY KEY,
    file_path text NOT NULL,
    file_name text NOT NULL,
    file_hash varchar(32),
    file_size bigint,
    file_mtime timestamptz,
    file_type text NOT NULL CHECK (file_type IN ('master', 'batch', 'stream')),
    source_table text NOT NULL,
    status text NOT NULL CHECK (status IN ('success', 'failed')),
    rejection_stage text,
    error_message text,
    total_records integer NOT NULL DEFAULT 0,
    valid_records integer NOT NULL DEFAULT 0,
    quarantined integer NOT NULL DEFAULT 0,
    duplicate_count integer NOT NULL DEFAULT 0,
    orphan_count integer NOT NULL DEFAULT 0,
    repaired integer NOT NULL DEFAULT 0,
    {load_owner}
    processed_at timestamptz NOT NULL DEFAULT now(),
    superseded_at timestamptz,
    CONSTRAINT file_log_counts_reconcile CHECK (total_records = valid_records + quarantined),
    CONSTRAINT file_log_repaired_rows_loaded CHECK (repaired <= valid_records)
);
COMMENT ON COLUMN {schema}.pipeline_file_log.repaired IS
    'loaded rows with at least one value repaired (value_repair holds each repair)';
COMMENT ON COLUMN {schema}.pipeline_file_log.file_hash IS 'MD5 of the bytes that were loaded';
CREATE INDEX IF NOT EXISTS idx_pipeline_file_log_file_name
    ON {schema}.pipeline_file_log (file_name);
CREATE INDEX IF NOT EXISTS idx_pipeline_file_log_status ON {schema}.pipeline_file_log (status);
CREATE INDEX IF NOT EXISTS idx_pipeline_file_log_processed_at
    ON {schema}.pipeline_file_log (processed_at);
CREATE INDEX IF NOT EXISTS idx_pipeline_file_log_partition
    ON {schema}.pipeline_file_log (asset_key, partition_key) WHERE superseded_at IS NULL;

CREATE TABLE {schema}.value_repair (
    repair_id bigserial PRIMARY KEY,
    source_file text NOT NULL,
    source_path text NOT NULL,
    source_table text NOT NULL,
    source_row integer NOT NULL,
    repair_stage text NOT NULL CHECK (repair_stage IN ('schema', 'records')),
    repair_rule text NOT NULL,
    repair_column text NOT NULL,
    repair_reason text NOT NULL,
    raw_value text,
    repaired_to text,
    {load_owner}
    repaired_at timestamptz NOT NULL DEFAULT now(),
    {superseded}
);
COMMENT ON TABLE {schema}.value_repair IS
    'one row per bad value of a loaded row that was repaired instead of rejecting the row';
COMMENT ON COLUMN {schema}.value_repair.raw_value IS
    'the value as it arrived (PII and values that look like PII masked); NULL when none arrived';
COMMENT ON COLUMN {schema}.value_repair.repaired_to IS
    'what the warehouse holds instead: NULL, or the contract''s placeholder';
CREATE INDEX IF NOT EXISTS idx_value_repair_partition
    ON {schema}.value_repair (asset_key, partition_key) WHERE superseded_at IS NULL;
CREATE INDEX IF NOT EXISTS idx_value_repair_row
    ON {schema}.value_repair (source_table, source_path, source_row) WHERE superseded_at IS NULL;

CREATE TABLE {schema}.schema_drift (
    drift_id bigserial PRIMARY KEY,
    source_file text NOT NULL,
    source_path text NOT NULL,
    source_table text NOT NULL,
    column_name text NOT NULL,
    drift_kind text NOT NULL CHECK (drift_kind IN ('unknown', 'missing')),
    row_count integer NOT NULL CHECK (row_count >= 0),
    {load_owner}
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    {superseded}
);
COMMENT ON TABLE {schema}.schema_drift IS
    'one row per file and column whose presence differs from the contract (validation/drift.py)';
COMMENT ON COLUMN {schema}.schema_drift.row_count IS
    'unknown: rows of the file that carry a value for the column; missing: rows of the file';
COMMENT ON COLUMN {schema}.schema_drift.first_seen_at IS
    'when a load of this file first showed the drift; last_seen_at: the latest load that did';
CREATE INDEX IF NOT EXISTS idx_schema_drift_partition
    ON {schema}.schema_drift (asset_key, partition_key) WHERE superseded_at IS NULL;

CREATE TABLE {schema}.alert_log (
    alert_key text PRIMARY KEY,
    asset_key text NOT NULL,
    partition_key text,
    reason text NOT NULL,
    first_sent_at timestamptz NOT NULL DEFAULT now(),
    last_sent_at timestamptz NOT NULL DEFAULT now(),
    sent_count integer NOT NULL DEFAULT 1,
    suppressed_count integer NOT NULL DEFAULT 0,
    last_suppressed_at timestamptz
);
COMMENT ON TABLE {schema}.alert_log IS
    'one row per asset + partition + reason alerted by mail; repeats within the window are counted';
""".replace(
    "{load_owner}", "asset_key text NOT NULL, partition_key text NOT NULL, run_id text NOT NULL,"
).replace("{superseded}", "superseded_at timestamptz, superseded_by_run text")

_MARTS_DDL = """
CREATE TABLE {schema}.mart_orders_daily (
    date_key integer NOT NULL, region_id integer, orders integer NOT NULL,
    delivered integer NOT NULL, revenue numeric NOT NULL, average_order_value numeric,
    cancellation_rate numeric, refund_rate numeric, average_delivery_minutes numeric,
    refreshed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS idx_mart_orders_daily_date_key ON {schema}.mart_orders_daily (date_key);
CREATE TABLE {schema}.mart_tickets_daily (
    date_key integer NOT NULL, agent_id integer, team_id integer, priority_id integer,
    tickets integer NOT NULL, first_response_met integer NOT NULL,
    first_response_judged integer NOT NULL, resolution_met integer NOT NULL,
    resolution_judged integer NOT NULL, reopened integer NOT NULL,
    first_response_compliance numeric, resolution_compliance numeric, reopen_rate numeric,
    refreshed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS idx_mart_tickets_daily_date_key
    ON {schema}.mart_tickets_daily (date_key);
"""

# Calendar rows come from the contract's date range; ON CONFLICT keeps re-applying a no-op and
# lets a widened range add the missing days.
FILL_DIM_DATE = """
INSERT INTO {schema}.dim_date
SELECT to_char(d, 'YYYYMMDD')::integer, d::date,
       extract(year FROM d), extract(quarter FROM d), extract(month FROM d),
       trim(to_char(d, 'Month')), extract(week FROM d), extract(isodow FROM d),
       extract(day FROM d), extract(doy FROM d), trim(to_char(d, 'Day')),
       extract(isodow FROM d) IN (6, 7)
FROM generate_series({{first}}::date, {{last}}::date, interval '1 day') AS d
ON CONFLICT (date_key) DO NOTHING
"""
FILL_DIM_TIME = """
INSERT INTO {schema}.dim_time
SELECT h * 100 + m, make_time(h, m, 0), h, m,
       CASE WHEN h < 12 THEN 'AM' ELSE 'PM' END,
       CASE WHEN h BETWEEN 6 AND 13 THEN 'morning' WHEN h BETWEEN 14 AND 21 THEN 'evening'
            ELSE 'night' END
FROM generate_series(0, 23) AS h, generate_series(0, 59) AS m
ON CONFLICT (time_key) DO NOTHING
"""


def _scripts_by_table(script: str) -> dict[str, str]:
    """Split a script of `CREATE TABLE {schema}.name (...)` blocks into one script per table."""
    parts = script.split("CREATE TABLE {schema}.")[1:]
    return {part.split(" ", 1)[0]: "CREATE TABLE {schema}." + part for part in parts}


# Columns added to a fixed table after warehouses with the table existed, with the rest of their
# definition; an older warehouse gains them when the schema is applied.
FIXED_COLUMNS = {
    ("pipeline_file_log", "repaired"): (
        "integer NOT NULL DEFAULT 0,"
        " ADD CONSTRAINT file_log_repaired_rows_loaded CHECK (repaired <= valid_records)"
    ),
}

FIXED_TABLES = (
    _scripts_by_table(_CALENDAR_DDL)
    | _scripts_by_table(_OPERATIONAL_DDL)
    | _scripts_by_table(_MARTS_DDL)
)
