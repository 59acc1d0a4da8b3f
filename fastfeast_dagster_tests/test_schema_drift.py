"""Schema drift (issue 16, part 1): files whose columns differ from the contract.

The pure rules first (no Dagster, no warehouse), then real files through `fastfeast ingest` on
the embedded default, as a user runs it: a rescued JSON key and a PII-looking CSV column, a
missing nullable column, a missing key column, the `contract_drift` check, `fastfeast contract
drift`, a replay, adopting the columns in the contract, and the `reject` policy.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import psycopg
import pytest
import yaml

from fastfeast_dagster.contract import DEFAULT_CONFIG_PATH, EXPECTATIONS_DIR, ColumnSpec, Contract
from fastfeast_dagster.validation.drift import (
    MISSING,
    UNKNOWN,
    DriftedColumn,
    adoption_yaml,
    infer_type,
    pii_name_kind,
)
from fastfeast_dagster.warehouse.ddl import apply_schema
from fastfeast_dagster_tests.commands import RUN_LINE, dagster_materialize, run_command

DAY_1 = "2026-03-02"
DAY_2 = "2026-03-03"


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("backup_email", "email"),
        ("E_Mail2", "email"),
        ("alt_mobile", "phone"),
        ("national_id_copy", "text"),
        ("nickname", "text"),
        ("coupon_code", None),
        ("population", None),
    ],
)
def test_an_unknown_column_is_pii_when_its_name_says_so(
    contract: Contract, name: str, kind: str | None
) -> None:
    assert pii_name_kind(name, contract.drift.pii_names) == kind


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        (["12", "+7", None, ""], "int"),
        (["12", "4.5"], "float"),
        (["99999999999"], "float"),  # beyond 32 bits: not an int column
        (["true", "0"], "bool"),
        (["2026-03-02", "null"], "date"),
        (["2026-03-02 10:00:00", "2026-03-02T10:00:01Z"], "timestamp"),
        (["SAVE10", "12"], "text"),
        ([None, "n/a"], "text"),  # nothing arrived: nothing to say but text
    ],
)
def test_a_rescued_column_is_suggested_as_the_narrowest_type_all_its_values_parse_as(
    contract: Contract, values: list[str | None], kind: str
) -> None:
    assert infer_type(values, contract) == kind


def test_the_adoption_yaml_is_contract_yaml_that_names_each_column(contract: Contract) -> None:
    seen = {"rows": 3, "files": 1, "first_seen": "a", "last_seen": "b"}
    drifted = [
        DriftedColumn("orders", "coupon_code", UNKNOWN, **seen),
        DriftedColumn("customers", "backup_email", UNKNOWN, **seen, pii="email"),
        DriftedColumn("customers", "population", UNKNOWN, **seen, type="int"),
        DriftedColumn("customers", "gender", MISSING, **seen),
    ]
    text = adoption_yaml(drifted)
    assert yaml.safe_load(text) == {
        "sources": {
            "orders": {"columns": {"coupon_code": {"type": "text"}}},
            "customers": {
                "columns": {
                    "backup_email": {"type": "text", "pii": "email"},
                    "population": {"type": "int"},
                }
            },
        }
    }
    assert "# gender: missing from 1 file(s), loaded as NULL" in text


def _batch(env: dict[str, str], day: str, name: str, content: str) -> Path:
    folder = Path(env["FASTFEAST_DATA_DIR"]) / "input" / "batch" / day
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(content)
    return folder / name


def _cities(extra: str) -> str:
    return json.dumps(
        [
            {"city_id": 1, "city_name": "Giza", "country": "Egypt", "timezone": "Africa/Cairo"},
            {"city_id": 2, "city_name": "Cairo", "country": "Egypt", "timezone": "Africa/Cairo"}
            | json.loads(extra),
        ]
    )


_CUSTOMER_HEADER = (
    "customer_id,full_name,email,phone,region_id,segment_id,signup_date,gender,created_at,"
    "updated_at"
)
_CUSTOMER = "Ann,ann@x.io,01012345678,,,2026-01-01,female,2026-01-01 10:00:00,2026-01-01 10:00:00"


def _customers(*rows: str, extra: str = ",Backup_Email") -> str:
    return "\n".join([_CUSTOMER_HEADER + extra, *rows]) + "\n"


def _ingest(env: dict[str, str]) -> list[str]:
    result = run_command(env, "fastfeast", "ingest", timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    return [line for line in result.stdout.splitlines() if RUN_LINE.match(line)]


def _url(env: dict[str, str]) -> str:
    return run_command(env, "fastfeast", "db", "url").stdout.strip()


def _reconciled(conn: psycopg.Connection) -> None:
    """Every row read is loaded or quarantined, per current file-log row and in quarantine."""
    for name, total, valid, quarantined in conn.execute(
        "SELECT file_name, total_records, valid_records, quarantined FROM pipeline_file_log"
        " WHERE superseded_at IS NULL"
    ):
        assert total == valid + quarantined, name
    (logged, rows) = conn.execute(
        "SELECT (SELECT sum(quarantined) FROM pipeline_file_log WHERE superseded_at IS NULL),"
        " (SELECT count(*) FROM quarantine WHERE superseded_at IS NULL)"
    ).fetchone() or (0, 0)
    assert logged == rows


def _drift_checks(url: str) -> list[str]:
    """The serialized `contract_drift` evaluations in Dagster's event log (its own database)."""
    with psycopg.connect(url, dbname="dagster") as conn:
        return [
            event
            for (event,) in conn.execute(
                "SELECT event FROM event_logs WHERE dagster_event_type = 'ASSET_CHECK_EVALUATION'"
                " AND event LIKE '%contract_drift%' ORDER BY id"
            )
        ]


def test_drift_loads_rescued_and_null_rejects_a_missing_key_and_adopting_fills_history(
    user_env: dict[str, str], tmp_path: Path
) -> None:
    env = user_env
    cities = _batch(env, DAY_1, "cities.json", _cities('{"Population": 9500000}'))
    _batch(env, DAY_1, "customers.csv", _customers(f"1,{_CUSTOMER},Ann.B@Example.com"))
    _batch(env, DAY_1, "teams.csv", "team_id\n1\n2\n")  # team_name (nullable) is missing
    _batch(env, DAY_2, "teams.csv", "team_name\nA\n")  # team_id, the key, is missing
    # A row that fails validation (its key is no number), and one whose region never loaded (an
    # orphan, moved to quarantine at load time): both quarantined with their raw values.
    orphan = _CUSTOMER.replace("01012345678,,", "01012345678,9,")
    _batch(
        env,
        DAY_2,
        "customers.csv",
        _customers(f"x,{_CUSTOMER},bob.b@example.com", f"5,{orphan},eve.b@example.com"),
    )
    lines = _ingest(env)
    day_1 = next(line for line in lines if f" {DAY_1} " in line)
    # The drift check WARNs (never blocks): the run is ok and names each drifted table.
    assert day_1.split()[1] == "ok"
    for table in ("dim_city", "dim_customer", "dim_team"):
        assert f"{table}:contract_drift (WARN)" in day_1, day_1
    url = _url(env)
    with psycopg.connect(url) as conn:
        # The extra key of one JSON row: the file loads whole, that row rescues the value.
        assert conn.execute("SELECT city_id, _rescued FROM dim_city ORDER BY 1").fetchall() == [
            (1, None),
            (2, {"population": "9500000"}),
        ]
        # A PII-looking CSV column: masked as an email in _rescued and in quarantine.
        ((rescued,),) = conn.execute("SELECT _rescued FROM dim_customer").fetchall()
        quarantined = dict(
            conn.execute(
                "SELECT rejection_stage, raw_data FROM quarantine"
                " WHERE source_table = 'dim_customer'"
            ).fetchall()
        )
        assert set(quarantined) == {"schema", "orphan"}
        tokens = [rescued["backup_email"], *(raw["backup_email"] for raw in quarantined.values())]
        assert all(len(token) == 64 and "@" not in token for token in tokens), tokens
        dumped = json.dumps(conn.execute("SELECT json_agg(q) FROM quarantine q").fetchone())
        assert "example.com" not in dumped.lower() and "x.io" not in dumped
        # The missing nullable column loads as NULL.
        teams = conn.execute("SELECT team_id, team_name FROM dim_team ORDER BY 1").fetchall()
        assert teams == [(1, None), (2, None)]
        # The missing key column rejects its file, naming the column.
        ((status, error),) = conn.execute(
            "SELECT status, error_message FROM pipeline_file_log"
            " WHERE file_name = 'teams.csv' AND partition_key = %s",
            (DAY_2,),
        ).fetchall()
        assert status == "failed" and "missing key or required column(s) team_id" in error
        drift = conn.execute(
            "SELECT source_table, column_name, drift_kind, row_count, partition_key"
            " FROM schema_drift WHERE superseded_at IS NULL ORDER BY 1, 2, 5"
        ).fetchall()
        assert drift == [
            ("dim_city", "population", "unknown", 1, DAY_1),
            ("dim_customer", "backup_email", "unknown", 1, DAY_1),
            ("dim_customer", "backup_email", "unknown", 2, DAY_2),
            ("dim_team", "team_id", "missing", 1, DAY_2),
            ("dim_team", "team_name", "missing", 2, DAY_1),
        ]
        _reconciled(conn)
    events = _drift_checks(url)
    assert any("population: {type: int}" in event for event in events)
    assert any("backup_email: {type: text, pii: email}" in event for event in events)

    report = run_command(env, "fastfeast", "contract", "drift")
    assert report.returncode == 0, report.stderr
    assert "dim_city:" in report.stdout and "population: {type: int}" in report.stdout
    assert re.search(r"backup_email +unknown +3 row\(s\) in 2 file\(s\)", report.stdout)
    assert "# team_name: missing from 1 file(s), loaded as NULL" in report.stdout
    assert "example.com" not in report.stdout.lower()

    # A replay of the same day counts nothing twice.
    replay = dagster_materialize(env, ["dim_city", "dim_team"], DAY_1)
    assert replay.returncode == 0, replay.stderr[-3000:]
    with psycopg.connect(url) as conn:
        assert conn.execute(
            "SELECT column_name, row_count, first_seen_at < last_seen_at FROM schema_drift"
            " WHERE source_table IN ('dim_city', 'dim_team') AND partition_key = %s"
            " ORDER BY 1",
            (DAY_1,),
        ).fetchall() == [("population", 1, True), ("team_name", 2, True)]

    # Adopting: the operator adds the columns; the files are gone (archived, say), so the
    # history can only come from what the rows rescued. The schema apply fills it.
    contract = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    contract["sources"]["cities"]["columns"]["population"] = {"type": "int"}
    contract["sources"]["customers"]["columns"]["backup_email"] = {"type": "text", "pii": "email"}
    adopted = tmp_path / "pipeline.yaml"
    adopted.write_text(yaml.safe_dump(contract, sort_keys=False))
    suites = shutil.copytree(EXPECTATIONS_DIR, tmp_path / "expectations")
    env = env | {"FASTFEAST_CONFIG": str(adopted), "FASTFEAST_EXPECTATIONS_DIR": str(suites)}
    # The tables' suites follow their columns (`expect_table_columns_to_match_set`).
    built = run_command(env, "fastfeast", "expectations", "build")
    assert built.returncode == 0, built.stdout + built.stderr
    cities.unlink()
    assert run_command(env, "fastfeast", "db", "start").returncode == 0
    with psycopg.connect(url) as conn:
        assert conn.execute(
            "SELECT city_id, population, _rescued FROM dim_city ORDER BY 1"
        ).fetchall() == [(1, None, None), (2, 9500000, None)]
        ((backup, rescued),) = conn.execute(
            "SELECT backup_email, _rescued FROM dim_customer"
        ).fetchall()
        assert backup == tokens[0] and rescued is None
    after = run_command(env, "fastfeast", "contract", "drift").stdout
    assert "population" not in after and "backup_email" not in after and "team_name" in after

    # The next load fills the adopted columns from the file; the address, spelt otherwise, masks
    # to the token the rescue made of it (both as an email).
    _batch(env, "2026-03-04", "customers.csv", _customers(f"1,{_CUSTOMER},ANN.B@example.com"))
    _batch(env, "2026-03-04", "cities.json", _cities('{"population": 9600000}'))
    _ingest(env)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT backup_email, _rescued FROM dim_customer").fetchall() == [
            (tokens[0], None)
        ]
        assert conn.execute("SELECT population FROM dim_city WHERE city_id = 2").fetchone() == (
            9600000,
        )
        (new_drift,) = conn.execute(
            "SELECT count(*) FROM schema_drift WHERE partition_key = '2026-03-04'"
        ).fetchone() or (None,)
        assert new_drift == 0
        _reconciled(conn)


def test_the_reject_policy_still_rejects_what_the_default_rescues(
    user_env: dict[str, str], tmp_path: Path
) -> None:
    contract = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    contract["sources"]["cities"]["drift"] = {"unknown_columns": "reject"}
    contract["sources"]["teams"]["drift"] = {
        "unknown_columns": "reject",
        "missing_columns": "reject",
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(contract, sort_keys=False))
    env = user_env | {"FASTFEAST_CONFIG": str(path)}
    _batch(env, DAY_1, "cities.json", _cities('{"lead": "x"}'))
    _batch(env, DAY_1, "teams.csv", "team_id,team_name,lead\n1,A,x\n")
    _batch(env, DAY_2, "teams.csv", "team_id\n1\n")
    _ingest(env)
    with psycopg.connect(_url(env)) as conn:
        # A JSON record with an unknown key costs that record; the file's other rows load.
        assert conn.execute("SELECT city_id FROM dim_city").fetchall() == [(1,)]
        assert conn.execute(
            "SELECT source_table, source_row, rejection_rule FROM quarantine ORDER BY 1, 2, 3"
        ).fetchall() == [
            ("dim_city", 2, "extra_key"),
            ("dim_team", 1, "extra_columns"),
            ("dim_team", 1, "missing_columns"),
        ]
        assert conn.execute("SELECT count(*) FROM dim_team").fetchone() == (0,)
        # The drift is recorded all the same, also of the files it rejected.
        assert conn.execute(
            "SELECT source_table, column_name, drift_kind FROM schema_drift ORDER BY 1, 2"
        ).fetchall() == [
            ("dim_city", "lead", "unknown"),
            ("dim_team", "lead", "unknown"),
            ("dim_team", "team_name", "missing"),
        ]
        _reconciled(conn)


def test_adopting_types_rescued_values_as_a_file_would_and_keeps_what_does_not_fit(
    conn: psycopg.Connection, contract: Contract
) -> None:
    apply_schema(conn, contract)
    conn.execute(
        "INSERT INTO dim_city (city_id, city_name, country, timezone, _rescued, _source_file,"
        " _source_row, _partition_key, _run_id) SELECT id, 'C', 'E', 'T', r::jsonb, 'f', id,"
        ' %s, \'r\' FROM (VALUES (1, \'{"population": "12", "mayor_email": "t0k3n"}\'),'
        ' (2, \'{"population": "lots"}\'), (3, \'{"population": "n/a"}\'),'
        ' (4, \'{"population": "-5"}\'), (5, NULL)) AS v (id, r)',
        (DAY_1,),
    )
    conn.commit()
    cities = contract.sources["cities"]
    columns = cities.columns | {
        "population": ColumnSpec(type="int", min=0),
        # Rescued as an email (its name): adopted as a phone, its tokens cannot be made phones'.
        "mayor_email": ColumnSpec(type="text", pii="phone"),
    }
    adopted = contract.model_copy(
        update={
            "sources": contract.sources | {"cities": cities.model_copy(update={"columns": columns})}
        }
    )
    apply_schema(conn, adopted)
    rows = conn.execute(
        "SELECT city_id, population, mayor_email, _rescued FROM dim_city ORDER BY 1"
    )
    assert rows.fetchall() == [
        (1, 12, None, {"mayor_email": "t0k3n"}),
        (2, None, None, {"population": "lots"}),  # not an integer: kept where it was
        (3, None, None, None),  # a null token: NULL, nothing left to keep
        (4, None, None, {"population": "-5"}),  # below the column's min: kept
        (5, None, None, None),
    ]
    # Applying again adds no column, so it fills nothing twice.
    assert apply_schema(conn, adopted) == 0
