"""Feedback: UBI-shaped events and search records, the durable spool that carries them to
OpenSearch, and the user profiles the learner keeps."""

from ._events import (
    APPLICATION,
    CandidateList,
    FeedbackEvent,
    SearchRecord,
    feedback_from_ubi,
    ubi_event,
    ubi_query,
    ubi_time,
)
from ._foreign import foreign_events
from ._profiles import Profile, ProfileCache, ProfileStore
from ._spool import (
    DeliveryReport,
    Spool,
    SpoolBusyError,
    SpoolRecord,
    claim_spool,
    deliver_unclaimed,
)

__all__ = [
    "APPLICATION",
    "CandidateList",
    "DeliveryReport",
    "FeedbackEvent",
    "Profile",
    "ProfileCache",
    "ProfileStore",
    "SearchRecord",
    "Spool",
    "SpoolBusyError",
    "SpoolRecord",
    "claim_spool",
    "deliver_unclaimed",
    "feedback_from_ubi",
    "foreign_events",
    "ubi_event",
    "ubi_query",
    "ubi_time",
]
