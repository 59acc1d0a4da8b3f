"""The deployment files in deploy/ are what their tools accept, and the package installs whole."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import jsonschema
import pytest
import yaml
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.instance.config import dagster_instance_config
from dagster._serdes import ConfigurableClassData

from fastfeast_dagster.contract import PROJECT_ROOT

pytestmark = pytest.mark.distributed

DEPLOY = PROJECT_ROOT / "deploy"
VALUES = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
SCHEMA = json.loads((DEPLOY / "helm" / "values.schema.subset.json").read_text())


def without_required(schema: object) -> object:
    """The schema with every `required` dropped: Helm validates the chart's defaults merged with
    these values, and the defaults supply what the values leave out."""
    if isinstance(schema, dict):
        return {key: without_required(value) for key, value in schema.items() if key != "required"}
    if isinstance(schema, list):
        return [without_required(value) for value in schema]
    return schema


def helm_errors(values: dict) -> list[str]:
    validator = jsonschema.Draft7Validator(without_required(SCHEMA))
    return [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(values)
    ]


def test_the_helm_values_match_the_charts_schema() -> None:
    assert helm_errors(VALUES) == []
    assert VALUES["runLauncher"]["type"] == "K8sRunLauncher"
    assert VALUES["postgresql"]["postgresqlScheme"] == "postgresql+psycopg2"
    (deployment,) = VALUES["dagster-user-deployments"]["deployments"]
    assert deployment["includeConfigInLaunchedRuns"] == {"enabled": True}
    assert deployment["envSecrets"] == [{"name": "fastfeast-env"}]
    limits = VALUES["additionalInstanceConfig"]["concurrency"]["runs"]
    assert {
        "key": "dagster/partition",
        "value": {"applyLimitPerUniqueValue": True},
        "limit": 1,
    } in (limits["tag_concurrency_limits"])
    assert VALUES["dagsterDaemon"]["runRetries"] == {"enabled": False}
    assert VALUES["additionalInstanceConfig"]["concurrency"]["pools"]["default_limit"] == 4


def test_the_helm_instance_additions_match_dagsters_schema(tmp_path: Path) -> None:
    """What the chart appends to its dagster.yaml (`additionalInstanceConfig`), beside the run
    coordinator it renders from the values (its template, camelCase to Dagster's keys), is a
    valid instance: there is no helm binary here to render the whole chart."""
    queued = VALUES["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    rendered = {
        "max_concurrent_runs": queued["maxConcurrentRuns"],
        "tag_concurrency_limits": queued["tagConcurrencyLimits"],
        "dequeue_interval_seconds": queued["dequeueIntervalSeconds"],
    }
    instance = {
        "storage": {"postgres": {"postgres_url": "postgresql+psycopg2://dagster@db/dagster"}},
        "run_coordinator": {
            "module": "dagster.core.run_coordinator",
            "class": "QueuedRunCoordinator",
            # The chart leaves out what is null.
            "config": {key: value for key, value in rendered.items() if value is not None},
        },
        **VALUES["additionalInstanceConfig"],
    }
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(instance))
    config, _ = dagster_instance_config(str(tmp_path), "dagster.yaml")
    assert config["run_monitoring"]["free_slots_after_run_end_seconds"] == 30
    assert config["concurrency"]["pools"] == {"default_limit": 4, "granularity": "op"}
    assert config["concurrency"]["runs"]["max_concurrent_runs"] == 8
    # A limit in the run coordinator beside the `concurrency` block is refused (what the values
    # first did): the check above is Dagster's own.
    instance["run_coordinator"]["config"]["max_concurrent_runs"] = 8
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(instance))
    with pytest.raises(DagsterInvalidConfigError, match="incompatible"):
        dagster_instance_config(str(tmp_path), "dagster.yaml")
    # The chart renders these itself; set again here they would be a second, conflicting block.
    assert not {"run_coordinator", "run_retries", "run_launcher"} & set(
        VALUES["additionalInstanceConfig"]
    )
    assert VALUES["dagsterDaemon"]["runMonitoring"] == {"enabled": False}


def test_the_schema_check_refuses_a_misspelt_key() -> None:
    values = copy.deepcopy(VALUES)
    values["runLauncher"]["config"]["k8sRunLauncher"]["envSecret"] = [{"name": "fastfeast-env"}]
    values["runLauncher"]["type"] = "K8SRunLauncher"
    errors = helm_errors(values)
    # The launcher's config is `anyOf` [its schema, null]: the error names the key path.
    assert any(error.startswith("runLauncher.config.k8sRunLauncher:") for error in errors), errors
    assert any(error.startswith("runLauncher.type:") for error in errors), errors


def test_the_celery_instance_matches_dagsters_schema_and_its_launcher_loads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FASTFEAST_CELERY_BROKER", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("FASTFEAST_CELERY_BACKEND", "redis://127.0.0.1:6379/1")
    config, _ = dagster_instance_config(str(DEPLOY / "celery"), "dagster.yaml")
    # The run-retry sensor heals, as on one machine; Dagster's retries would re-run checks.
    assert config["run_retries"] == {"enabled": False}
    assert config["concurrency"]["pools"] == {"default_limit": 4, "granularity": "op"}
    assert config["run_monitoring"]["free_slots_after_run_end_seconds"] == 30
    assert config["concurrency"]["runs"]["tag_concurrency_limits"][0]["key"] == "dagster/partition"
    launcher = config["run_launcher"]
    # The module path the issue pinned: CeleryRunLauncher is not exported from dagster_celery.
    data = ConfigurableClassData(
        launcher["module"], launcher["class"], yaml.safe_dump(launcher["config"])
    )
    built = data.rehydrate(object)
    assert type(built).__module__ == "dagster_celery.launcher"
    assert built.backend == "redis://127.0.0.1:6379/1"  # run monitoring reads task state here
    assert built.supports_check_run_worker_health


def test_the_celery_worker_config_matches_dagster_celerys_schema(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dagster_celery.cli import get_validated_config

    monkeypatch.setenv("FASTFEAST_CELERY_BROKER", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("FASTFEAST_CELERY_BACKEND", "redis://127.0.0.1:6379/1")
    config = get_validated_config(str(DEPLOY / "celery" / "celery.yaml"))
    assert config["broker"] == "redis://127.0.0.1:6379/0"
    assert config["backend"] == "redis://127.0.0.1:6379/1"


def test_the_image_installs_the_package_with_its_contract_and_suites(tmp_path: Path) -> None:
    """What deploy/Dockerfile installs: a wheel, not the source tree; it must carry config/."""
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert 'pip install --no-cache-dir --prefix=/install ".[cluster]"' in dockerfile
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), "."],
        cwd=PROJECT_ROOT,
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("fastfeast_dagster-*.whl")
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "import fastfeast_dagster, json;"
        "from fastfeast_dagster.contract import DEFAULT_CONFIG_PATH, EXPECTATIONS_DIR;"
        "from fastfeast_dagster.contract import load_contract;"
        "print(json.dumps([fastfeast_dagster.__file__, str(DEFAULT_CONFIG_PATH),"
        " sorted(p.name for p in EXPECTATIONS_DIR.glob('*.json')), len(load_contract().sources)]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, str(site)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": str(Path(sys.executable).parent), "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    module, contract_file, suites, sources = json.loads(result.stdout.splitlines()[-1])
    assert module.startswith(str(site)) and contract_file.startswith(str(site))
    expected = sorted(p.name for p in (PROJECT_ROOT / "config" / "expectations").glob("*.json"))
    assert suites == expected and sources == 16
