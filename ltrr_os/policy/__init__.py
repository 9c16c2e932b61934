"""Retrieval policies: which strategies to run per query and how many candidates to draw."""

from ._models import (
    ENGAGEMENT_WEIGHTS,
    SIZE_LEVELS,
    Decision,
    DecisionContext,
    Outcome,
    PlanProbability,
    Policy,
    StrategyChoice,
    StrategyOption,
    StrategyOutcome,
    TimeContext,
    UserProfile,
)
from ._ope import Interval, LoggedRound, OffPolicyEstimate, estimate
from ._per_strategy import PerStrategyBandit
from ._plan import DEFAULT_PLANS, PlanBandit, PlanBanditConfig, new_default_policy
from ._simulation import RoundResult, SyntheticEnvironment, simulate
from ._static import DEFAULT_RULES, FixedPlanPolicy, RulePolicy, SingleStrategyPolicy
from ._vw import (
    DEFAULT_POLICY_NAME,
    BanditConfig,
    Exploration,
    VWBandit,
    policy_from_bytes,
)

__all__ = [
    "DEFAULT_PLANS",
    "DEFAULT_POLICY_NAME",
    "DEFAULT_RULES",
    "ENGAGEMENT_WEIGHTS",
    "SIZE_LEVELS",
    "BanditConfig",
    "Decision",
    "DecisionContext",
    "Exploration",
    "FixedPlanPolicy",
    "Interval",
    "LoggedRound",
    "OffPolicyEstimate",
    "Outcome",
    "PerStrategyBandit",
    "PlanBandit",
    "PlanBanditConfig",
    "PlanProbability",
    "Policy",
    "RoundResult",
    "RulePolicy",
    "SingleStrategyPolicy",
    "StrategyChoice",
    "StrategyOption",
    "StrategyOutcome",
    "SyntheticEnvironment",
    "TimeContext",
    "UserProfile",
    "VWBandit",
    "estimate",
    "new_default_policy",
    "policy_from_bytes",
    "simulate",
]
