"""Learned models in OpenSearch: versions, the live pointer servers load, promotion (with its
gate), rollback and pruning."""

from ._gate import RANKER_NAME, GateDecision, live_ranker, policy_gate, train_ranker
from ._store import MODEL_KINDS, LivePointer, ModelKind, ModelStore, ModelVersion, who

__all__ = [
    "MODEL_KINDS",
    "RANKER_NAME",
    "GateDecision",
    "LivePointer",
    "ModelKind",
    "ModelStore",
    "ModelVersion",
    "live_ranker",
    "policy_gate",
    "train_ranker",
    "who",
]
