"""Evaluation: judged query sets (queries, qrels, documents) and the test collections they come
from; logged and off-policy evaluation; and the online simulation of users over the catalog."""

from ..policy import LoggedRound, OffPolicyEstimate, estimate
from ._datasets import (
    JudgedCollection,
    read_cisi,
    read_cranfield,
    read_qrels,
    read_queries,
    write_documents,
    write_qrels,
    write_queries,
)
from ._evaluate import MEASURES, EvaluationReport, EvaluationRow, evaluate
from ._logged import LoggedEvaluationReport, evaluate_logged
from ._report import verdict, write_dsjson, write_report
from ._simulate import (
    CurvePoint,
    NewEntities,
    PolicyMetrics,
    PolicySummary,
    SimulationSummary,
    make_policy,
    policy_names,
    simulate,
    taste_vectors,
)
from ._world import NEW_ENTITIES, World, build_world, misspell

__all__ = [
    "MEASURES",
    "NEW_ENTITIES",
    "CurvePoint",
    "EvaluationReport",
    "EvaluationRow",
    "JudgedCollection",
    "LoggedEvaluationReport",
    "LoggedRound",
    "NewEntities",
    "OffPolicyEstimate",
    "PolicyMetrics",
    "PolicySummary",
    "SimulationSummary",
    "World",
    "build_world",
    "estimate",
    "evaluate",
    "evaluate_logged",
    "make_policy",
    "misspell",
    "policy_names",
    "read_cisi",
    "read_cranfield",
    "read_qrels",
    "read_queries",
    "simulate",
    "taste_vectors",
    "verdict",
    "write_documents",
    "write_dsjson",
    "write_qrels",
    "write_queries",
    "write_report",
]
