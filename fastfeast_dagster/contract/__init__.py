"""The pipeline contract, `config/pipeline.yaml`: the single source of truth, typed and checked."""

from fastfeast_dagster.contract.loading import (
    DEFAULT_CONFIG_PATH,
    EXPECTATIONS_DIR,
    PROJECT_ROOT,
    STATE_DIR_ENV,
    ContractError,
    cached_contract,
    contract_path,
    data_root,
    default_contract,
    load_contract,
    state_root,
)
from fastfeast_dagster.contract.model import (
    ColumnSpec,
    Contract,
    DerivedColumn,
    ForeignKey,
    History,
    NotBeforeRule,
    SmtpSettings,
    SourceSpec,
    SumEqualsRule,
)
from fastfeast_dagster.contract.policy import ValuePolicy
from fastfeast_dagster.contract.relations import CALENDAR_TABLES, Reference, Relations
from fastfeast_dagster.contract.types import (
    DERIVED_TYPES,
    TEXT_DTYPE,
    TYPES,
    ColumnType,
    TableColumn,
)

__all__ = [
    "CALENDAR_TABLES",
    "DEFAULT_CONFIG_PATH",
    "DERIVED_TYPES",
    "EXPECTATIONS_DIR",
    "PROJECT_ROOT",
    "STATE_DIR_ENV",
    "TEXT_DTYPE",
    "TYPES",
    "ColumnSpec",
    "ColumnType",
    "Contract",
    "ContractError",
    "DerivedColumn",
    "ForeignKey",
    "History",
    "NotBeforeRule",
    "Reference",
    "Relations",
    "SmtpSettings",
    "SourceSpec",
    "SumEqualsRule",
    "TableColumn",
    "ValuePolicy",
    "cached_contract",
    "contract_path",
    "data_root",
    "default_contract",
    "load_contract",
    "state_root",
]
