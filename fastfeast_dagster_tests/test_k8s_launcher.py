"""The Kubernetes Job that K8sRunLauncher would create from deploy/helm/values.yaml, replayed here.

dagster-k8s's own unit tests build the launcher with a stand-in batch API and read the Job it
was given; so does this test, with a recorder (no cluster). The Job's command then runs as a
process with nothing but the Job's environment, its secrets resolved from what the README says
they hold, in a directory of its own: the run loads the master's cities and regions from S3
(moto) into the warehouse, as a pod would.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import boto3
import dagster as dg
import psycopg
import pytest
import yaml
from dagster._core.definitions.reconstruct import ReconstructableRepository
from dagster._core.instance.ref import InstanceRef
from dagster._core.launcher import LaunchRunContext
from dagster._core.origin import JobPythonOrigin
from dagster_k8s import K8sRunLauncher
from kubernetes.client import ApiClient

from fastfeast_dagster.contract import PROJECT_ROOT
from fastfeast_dagster.synthetic import generate
from fastfeast_dagster.warehouse.embedded import EmbeddedPostgres, create_database
from fastfeast_dagster_tests.objectstore import s3_endpoint, s3_environment, upload_tree

__all__ = ["s3_endpoint"]  # fixture
pytestmark = pytest.mark.distributed

VALUES = yaml.safe_load((PROJECT_ROOT / "deploy" / "helm" / "values.yaml").read_text())
(DEPLOYMENT,) = VALUES["dagster-user-deployments"]["deployments"]
RUN_LAUNCHER = VALUES["runLauncher"]["config"]["k8sRunLauncher"]
IMAGE = f"{DEPLOYMENT['image']['repository']}:{DEPLOYMENT['image']['tag']}"
PG_SECRET = VALUES["global"]["postgresqlSecretName"]
# The chart's default DAGSTER_HOME in every pod.
DAGSTER_HOME = "/opt/dagster/dagster_home"
TABLES = ["dim_city", "dim_region"]


class RecordingBatchApi:
    """Stands in for kubernetes' BatchV1Api: keeps each Job it is asked to create."""

    def __init__(self) -> None:
        self.jobs: list[tuple[str, Any]] = []

    def create_namespaced_job(self, body: Any, namespace: str, **_: Any) -> None:
        self.jobs.append((namespace, body))


def launcher(batch_api: RecordingBatchApi, kubeconfig: Path) -> K8sRunLauncher:
    """The launcher the chart configures from the values (out of cluster: a kubeconfig that
    is never contacted, as in dagster-k8s's tests)."""
    return K8sRunLauncher(
        service_account_name="fastfeast-dagster",
        instance_config_map="fastfeast-dagster-instance",
        postgres_password_secret=PG_SECRET,
        dagster_home=DAGSTER_HOME,
        image_pull_policy=RUN_LAUNCHER["imagePullPolicy"],
        load_incluster_config=False,
        kubeconfig_file=str(kubeconfig),
        job_namespace="fastfeast",
        env_config_maps=RUN_LAUNCHER["envConfigMaps"],
        env_secrets=[secret["name"] for secret in RUN_LAUNCHER["envSecrets"]],
        env_vars=RUN_LAUNCHER["envVars"],
        fail_pod_on_run_failure=RUN_LAUNCHER["failPodOnRunFailure"],
        k8s_client_batch_api=batch_api,
    )


def code_location_origin() -> Any:
    """The origin the code server reports with includeConfigInLaunchedRuns: its image, and the
    deployment's env and secrets as the run's container context."""
    origin = ReconstructableRepository.for_module(
        "fastfeast_dagster.definitions", "defs", str(PROJECT_ROOT)
    ).get_python_origin()
    context = {
        "k8s": {
            "env": DEPLOYMENT["env"],
            "env_secrets": [secret["name"] for secret in DEPLOYMENT["envSecrets"]],
            "image_pull_policy": DEPLOYMENT["image"]["pullPolicy"],
        }
    }
    return origin._replace(container_image=IMAGE, container_context=context)


KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: "https://127.0.0.1:1"}}]
contexts: [{name: test, context: {cluster: test, user: test}}]
current-context: test
users: [{name: test, user: {token: unused}}]
"""


def instance_home(tmp_path: Path, pg_server: EmbeddedPostgres, database: str) -> Path:
    """The instance the chart's configmap describes: storage in PostgreSQL, its password from
    DAGSTER_PG_PASSWORD (the chart's own variable, from the postgres secret)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    socket = pg_server.status().socket_dir
    storage = {
        "postgres_db": {
            "username": "postgres",
            "password": {"env": "DAGSTER_PG_PASSWORD"},
            "hostname": "localhost",
            "db_name": database,
            "port": 5432,
            "params": {"host": str(socket)},
            "scheme": "postgresql+psycopg2",
        }
    }
    (home / "dagster.yaml").write_text(yaml.safe_dump({"storage": {"postgres": storage}}))
    return home


def job_environment(container: dict, secrets: dict[str, dict[str, str]]) -> dict[str, str]:
    """The container's environment as Kubernetes would give it, secrets resolved."""
    env = {}
    for source in container.get("envFrom", []):
        env |= secrets[source["secretRef"]["name"]]
    for variable in container.get("env", []):
        if "value" in variable:
            env[variable["name"]] = variable["value"]
        else:
            ref = variable["valueFrom"]["secretKeyRef"]
            env[variable["name"]] = secrets[ref["name"]][ref["key"]]
    return env


def test_the_job_it_would_create_runs_the_partition_in_a_clean_environment(
    tmp_path: Path,
    pg_server: EmbeddedPostgres,
    warehouse_url: str,
    s3_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fastfeast_dagster.definitions import defs

    # The landing bucket the values name, in moto, holding a generated day.
    data_url = next(e["value"] for e in DEPLOYMENT["env"] if e["name"] == "FASTFEAST_DATA_DIR")
    bucket, _, prefix = data_url.removeprefix("s3://").partition("/")
    for name, value in s3_environment(s3_endpoint).items():
        monkeypatch.setenv(name, value)
    boto3.client("s3").create_bucket(Bucket=bucket)
    generate(tmp_path / "data", dt.date(2026, 3, 2), hours=[], scale=0.2)
    upload_tree(tmp_path / "data", bucket, prefix)

    password = "unused-by-the-test-servers-trust-auth"
    secrets = {
        PG_SECRET: {"postgresql-password": password},
        "fastfeast-env": {
            "FASTFEAST_DATABASE_URL": warehouse_url,
            "FASTFEAST_PII_KEY": "k8s-test-pii-key",
            **s3_environment(s3_endpoint),
        },
    }
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", password)
    (tmp_path / "kubeconfig").write_text(KUBECONFIG)
    batch_api = RecordingBatchApi()
    k8s = launcher(batch_api, tmp_path / "kubeconfig")
    keys = [dg.AssetKey(table) for table in TABLES]
    job = defs.resolve_implicit_job_def_def_for_assets(keys)
    assert job is not None
    storage = f"k8s_{uuid.uuid4().hex[:10]}"
    create_database(pg_server.url("postgres"), storage)
    home = instance_home(tmp_path, pg_server, storage)
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        k8s.register_instance(instance)
        run = instance.create_run_for_job(
            job_def=job,
            asset_selection=frozenset(keys),
            tags={"dagster/partition": "2026-01-01"},
            job_code_origin=JobPythonOrigin(job.name, code_location_origin()),
        )
        k8s.launch_run(LaunchRunContext(dagster_run=run, workspace=None))

        ((namespace, body),) = batch_api.jobs
        spec = ApiClient().sanitize_for_serialization(body)
        (container,) = spec["spec"]["template"]["spec"]["containers"]
        assert namespace == "fastfeast"
        assert container["image"] == IMAGE
        assert container["args"][:3] == ["dagster", "api", "execute_run"]
        assert {"secretRef": {"name": "fastfeast-env"}} in container["envFrom"]
        env = job_environment(container, secrets)
        assert env["FASTFEAST_DEPLOYMENT"] == "distributed"
        assert env["DAGSTER_HOME"] == DAGSTER_HOME

        # The pod, on this machine: the Job's command and environment, nothing of the test's.
        workdir = tmp_path / "pod"
        workdir.mkdir()
        replay = env | {
            "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
            "HOME": str(workdir),
        }
        assert not any(name.startswith("FASTFEAST_STATE") for name in replay)
        done = subprocess.run(
            container["args"],
            env=replay,
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        finished = instance.get_run_by_id(run.run_id)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert finished is not None and finished.status == dg.DagsterRunStatus.SUCCESS
    with psycopg.connect(warehouse_url) as conn:
        loaded = dict(
            conn.execute(
                "SELECT source_table, sum(valid_records) FROM pipeline_file_log GROUP BY 1"
            ).fetchall()
        )
        paths = [row[0] for row in conn.execute("SELECT file_path FROM pipeline_file_log")]
    assert set(loaded) == set(TABLES) and all(count > 0 for count in loaded.values())
    assert all(path.startswith(f"{data_url}/master/") for path in paths), paths
    # Nothing of the project's in the pod's home and working directory (Dagster keeps its
    # telemetry id in ~/.dagster).
    assert set(os.listdir(workdir)) <= {".dagster"}
