"""Feedback: UBI-shaped events and search records, the durable spool that carries them to
OpenSearch, outcomes and settlement for the policy, user profiles, and replay from the log."""

from ._events import APPLICATION, CandidateList, FeedbackEvent, SearchRecord, ubi_event, ubi_query
from ._outcomes import PendingSearches, outcome_of
from ._profiles import UserProfiles
from ._replay import ReplayReport, replay
from ._spool import DeliveryReport, Spool, SpoolRecord

__all__ = [
    "APPLICATION",
    "CandidateList",
    "DeliveryReport",
    "FeedbackEvent",
    "PendingSearches",
    "ReplayReport",
    "SearchRecord",
    "Spool",
    "SpoolRecord",
    "UserProfiles",
    "outcome_of",
    "replay",
    "ubi_event",
    "ubi_query",
]
