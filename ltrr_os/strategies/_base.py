"""What a retrieval strategy is: a stored search template plus a descriptor that fills it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal, get_args

from ..config import CatalogSchema, LtrrSettings
from ..embedding import Encoder
from ..understanding import UnderstoodQuery

SourceType = Literal[
    "lexical", "structured", "vector", "memory", "exploration", "related", "personal", "fresh"
]
SOURCE_TYPES: tuple[SourceType, ...] = get_args(SourceType)
NOT_RETURNED = (
    "embedding",
    "embedding_hash",
    "q2e",
    "q2e_prior",
    "predicted_queries",
    "sources",
    "ingested_at",
    "memory_updated_at",
    "memory_batches",
)


@dataclass(frozen=True)
class Seed:
    """A hit of the first round trip that an expansion strategy (related) starts from."""

    id: str
    source: Mapping[str, Any]
    weight: float


@dataclass(frozen=True)
class StrategyContext:
    """Everything a strategy needs besides the query: the catalog's shape and the encoder."""

    settings: LtrrSettings
    schema: CatalogSchema
    encoder: Encoder
    timeout_ms: int = 1000
    max_query_chars: int = 512
    exploration_seed: int = 0
    filters: list[dict[str, Any]] = field(default_factory=list)
    now: datetime | None = None
    """The time of the search (None: the clock's), for what depends on it: memory decay."""
    memory_namespace: str = ""
    """Whose Q2E memory the memory strategy reads ('' : the deployment's own; a simulation
    gives each policy its own, so that none learns from another's traffic)."""
    user_vector: tuple[float, ...] | None = None
    """The searching user's taste (unit length), None without engagement history."""
    seeds: tuple[Seed, ...] = ()
    """For expansion strategies: the first round trip's best hits."""

    @property
    def source_filter(self) -> dict[str, list[str]]:
        """What each candidate brings back: its fields, without vectors and memory maps. An
        exclude list, not an include list: with the k-NN derived source, excluding the vector
        skips rebuilding it, which makes fetching about four times faster."""
        return {"excludes": [*NOT_RETURNED]}


class Strategy(ABC):
    """A candidate generator. `params` returns None when the strategy has nothing to say about
    the query (e.g. structured search without slots), so it is not run at all. An expansion
    strategy (`expands`) runs in a second round trip, from the first one's hits (`seeds`)."""

    name: ClassVar[str]
    source_type: ClassVar[SourceType]
    expands: ClassVar[bool] = False

    @property
    def template(self) -> str:
        """The file in index_templates/search/ that holds its mustache template."""
        return f"{self.name}.mustache"

    def applicable(self, query: UnderstoodQuery, context: StrategyContext) -> bool:
        """Whether the strategy has anything to run for this query in this context (cheap: no
        encoding)."""
        return bool(query.tokens)

    @abstractmethod
    def params(
        self, query: UnderstoodQuery, context: StrategyContext, size: int
    ) -> dict[str, Any] | None:
        """Template parameters for `size` candidates, None when not applicable; user text only
        ever inside values rendered with {{#toJson}}."""

    def template_id(self, settings: LtrrSettings) -> str:
        return settings.index_name(f"strategy-{self.name}")
