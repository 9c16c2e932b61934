"""Evaluation: judged query sets (queries, qrels, documents) and the test collections they come
from."""

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

__all__ = [
    "MEASURES",
    "EvaluationReport",
    "EvaluationRow",
    "JudgedCollection",
    "LoggedEvaluationReport",
    "evaluate",
    "evaluate_logged",
    "read_cisi",
    "read_cranfield",
    "read_qrels",
    "read_queries",
    "write_documents",
    "write_qrels",
    "write_queries",
]
