"""Learning: the rules that say what logged searches and events teach, and the learner that
reads the UBI logs and is the one writer of learned state (memory, profiles, policy, ranker)."""

from ._checkpoint import Checkpoint, LeaseHeldError
from ._learner import Learner, LearnerConfig, LearnerReport
from ._rules import LearningRules, LoggedEvent, LoggedSearch, MemoryLesson, outcome_of

__all__ = [
    "Checkpoint",
    "Learner",
    "LearnerConfig",
    "LearnerReport",
    "LearningRules",
    "LeaseHeldError",
    "LoggedEvent",
    "LoggedSearch",
    "MemoryLesson",
    "outcome_of",
]
