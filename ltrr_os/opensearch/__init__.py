"""OpenSearch access: clients, capability checks, index templates and bootstrap."""

from ._bootstrap import Step, bootstrap, plan_bootstrap
from ._client import client_options, connect, connect_async, opensearch_error
from ._doctor import Check, cluster_version, run_checks
from ._templates import INGEST_PIPELINE, LogicalIndex, logical_indices, templates_dir

__all__ = [
    "INGEST_PIPELINE",
    "Check",
    "LogicalIndex",
    "Step",
    "bootstrap",
    "client_options",
    "cluster_version",
    "connect",
    "connect_async",
    "logical_indices",
    "opensearch_error",
    "plan_bootstrap",
    "run_checks",
    "templates_dir",
]
