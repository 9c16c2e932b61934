"""OpenSearch access: building clients and checking what a cluster can do."""

from ._client import client_options, connect
from ._doctor import Check, cluster_version, run_checks

__all__ = ["Check", "client_options", "cluster_version", "connect", "run_checks"]
