"""The generators beyond the query's text, on a real node: related entities (a second round trip
from the first one's hits, within a deadline), personal (the user's taste, nothing without
history) and fresh (entities added lately), and the taste the learner keeps in profiles."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
from opensearchpy import OpenSearch

from ltrr_os.catalog import SourceRow, entity_vectors, ingest_rows
from ltrr_os.embedding import Encoder
from ltrr_os.feedback import Profile
from ltrr_os.pipeline import SearchPipeline, Served
from ltrr_os.policy import FixedPlanPolicy, UserProfile

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)


def search(
    pipeline: SearchPipeline,
    text: str,
    plan: dict[str, int],
    user: UserProfile | None = None,
    moment: datetime = NOW,
) -> Served:
    return pipeline.search(
        text,
        policy=FixedPlanPolicy(plan),
        ranker=pipeline.fused,
        user=user or UserProfile(),
        moment=moment,
        limit=50,
    )


def test_related_brings_along_the_artists_tracks_named_after_the_hit(
    pipeline: SearchPipeline,
) -> None:
    served = search(pipeline, "queen", {"lexical": 3, "related": 30})
    related = served.retrieval.results["related"]
    assert related.ok
    assert related.candidates
    tracks = [c for c in related.candidates if c.source["entity_type"] == "track"]
    assert len(tracks) >= 10
    assert all(c.source["artist"] == "Queen" for c in tracks)
    assert all("artist:queen" in c.via for c in tracks)
    popularity = [float(c.source.get("popularity_value") or 0) for c in tracks]
    assert popularity[0] == max(popularity)  # the artist's most popular track first
    # The provenance of the union names the hit the candidate came from.
    found = {c.id: c for c in served.union}
    assert any(
        p.strategy == "related" and "artist:queen" in p.via
        for c in found.values()
        if c.source.get("artist") == "Queen" and c.source["entity_type"] == "track"
        for p in c.provenance
    )
    # A track's expansion reaches its artist and its album.
    served = search(pipeline, "bohemian rhapsody", {"lexical": 1, "related": 10})
    kinds = {c.source["entity_type"] for c in served.retrieval.results["related"].candidates}
    assert "artist" in kinds


def test_related_past_its_deadline_times_out_and_the_search_still_answers(
    pipeline: SearchPipeline,
) -> None:
    settings = pipeline.context.settings.model_copy(update={"expansion_deadline_ms": 0})
    late = SearchPipeline(
        pipeline.schema,
        pipeline.lexicon,
        replace(pipeline.context, settings=settings),
        pipeline.retriever,
        budget=400,
    )
    served = search(late, "queen", {"lexical": 5, "related": 30})
    related = served.retrieval.results["related"]
    assert related.timed_out
    assert not related.candidates
    assert served.retrieval.partial
    assert len(served.shown) == 5  # the first round trip's candidates, ranked
    # Nothing to start from (no hits): skipped, not timed out.
    served = search(pipeline, "zzzqqqxxyy", {"lexical": 5, "related": 30})
    assert served.retrieval.results["related"].skipped


def test_personal_needs_a_taste_and_follows_it(
    pipeline: SearchPipeline, os_client: OpenSearch
) -> None:
    plan = {"personal": 20, "personal_taste": 20, "lexical": 5}
    nobody = search(pipeline, "rock", plan)
    assert nobody.decision.plan == {"lexical": 5}  # not applicable: no taste, no candidates
    assert not nobody.context.options[
        [o.strategy for o in nobody.context.options].index("personal")
    ].applicable
    # A user whose engagements were Dolly Parton's tracks gets country near the top.
    dolly = search(pipeline, "dolly parton", {"lexical": 10}).retrieval.results["lexical"]
    ids = [c.id for c in dolly.candidates if c.source["entity_type"] == "track"][:5]
    profile = Profile(user_id="u1")
    vectors = entity_vectors(os_client, pipeline.context.settings, ids)
    assert len(vectors) == len(ids)
    for n, item in enumerate(ids):
        profile.engage({}, vectors[item], 1.0, NOW - timedelta(days=n))
    user = profile.view(NOW)
    assert user.taste is not None
    assert abs(float(np.linalg.norm(user.taste)) - 1) < 1e-3
    served = search(pipeline, "songs", plan, user)
    taste = served.retrieval.results["personal_taste"]
    assert taste.ok
    assert len(taste.candidates) == 20
    assert sum(c.source.get("artist") == "Dolly Parton" for c in taste.candidates[:10]) >= 5
    blended = served.retrieval.results["personal"]
    assert blended.ok
    assert blended.candidates
    assert [c.id for c in blended.candidates] != [c.id for c in taste.candidates]
    # A vague query that names an attribute: the user's taste within it.
    rock = search(pipeline, "rock", plan, user).retrieval.results["personal_taste"]
    assert rock.candidates
    assert all("rock" in c.source.get("genre", []) for c in rock.candidates)
    # What the decision logs never carries the taste vector.
    assert "taste" not in served.context.model_dump()["user"]
    assert served.context.user.taste is not None


def test_fresh_finds_what_was_added_lately_and_reingest_keeps_when(
    pipeline: SearchPipeline, os_client: OpenSearch, encoder: Encoder
) -> None:
    settings = pipeline.context.settings
    schema = pipeline.schema

    def add(entity_id: str, title: str, when: datetime) -> None:
        entity = {"id": entity_id, "entity_type": "track", "title": title, "artist": "Nova"}
        report = ingest_rows(
            os_client, settings, schema, [SourceRow("t", 1, entity)], encoder, added_at=when
        )
        assert report.indexed == 1

    add("track:fresh-new", "Quasar Lullaby", NOW - timedelta(days=2))
    add("track:fresh-old", "Quasar Lullaby Remastered", NOW - timedelta(days=90))
    served = search(pipeline, "quasar lullaby", {"fresh": 10, "lexical": 10})
    fresh = [c.id for c in served.retrieval.results["fresh"].candidates]
    assert fresh == ["track:fresh-new"]
    assert {"track:fresh-new", "track:fresh-old"} <= {c.id for c in served.union}
    # Ingested again later, the entity keeps when it joined the catalog.
    add("track:fresh-new", "Quasar Lullaby", NOW)
    stored = os_client.get(index=settings.index_name("catalog"), id="track:fresh-new")
    assert stored["_source"]["added_at"].startswith((NOW - timedelta(days=2)).date().isoformat())
    # Thirty days on, it is no longer fresh.
    later = search(pipeline, "quasar lullaby", {"fresh": 10}, moment=NOW + timedelta(days=40))
    assert later.retrieval.results["fresh"].candidates == []
