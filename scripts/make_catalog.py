"""A large music catalog for scale benchmarks, derived from the real data shipped with ltrr-os, and
known-item queries judged against it. Nothing is encoded.

    .venv/bin/python scripts/make_catalog.py --entities 200000 --seed 1 --out runs/cat200k.jsonl
    ltrr --index-prefix scale- bootstrap && ltrr --index-prefix scale- ingest runs/cat200k.jsonl
    ltrr --index-prefix scale- evaluate --queries runs/cat200k.queries.tsv \\
         --qrels runs/cat200k.qrels.txt --out runs/cat200k-eval

The sample catalog (3,000 real tracks, albums and artists with their sentence vectors) comes
first, as it is. Every further entity is derived from a real one of the same type, drawn with
the real popularity distribution: its attributes (genres, eras, moods, audio features), artist
and album are the real entity's; its title is the real title with words of other real titles
added until (title, artist) is new; its popularity is another real entity's; its vector is the
real vector turned by Gaussian noise (cosine about 0.9 to it) and renormalised, stored as int8
with a scale (`embedding_int8`, `embedding_scale`: what `ltrr ingest` takes).

Queries: --queries derived tracks and albums, each searched as "title artist", relevant: that
entity (TSV `id<TAB>text` and TREC qrels, beside --out).
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ltrr_os.catalog import sample_rows

NOISE = 0.0247
"""Per-dimension noise for unit 384-d vectors: cosine 1 / sqrt(1 + 384 * NOISE**2), about 0.9."""


def real_entities() -> list[dict[str, Any]]:
    return [dict(row.values) for row in sample_rows()]


def vector(entity: dict[str, Any]) -> npt.NDArray[np.float64]:
    raw = np.frombuffer(base64.b64decode(entity["embedding_int8"]), np.int8)
    values = raw.astype(np.float64) * float(entity["embedding_scale"])
    return values / np.linalg.norm(values)


def quantised(values: npt.NDArray[np.float64]) -> tuple[str, float]:
    scale = float(np.abs(values).max()) / 127
    return base64.b64encode(np.round(values / scale).astype(np.int8).tobytes()).decode(), scale


def derived(
    real: list[dict[str, Any]], count: int, rng: random.Random, noise: np.random.Generator
) -> Iterator[dict[str, Any]]:
    """`count` entities derived from the real ones (see the module docstring)."""
    cumulative = list(itertools.accumulate(float(e.get("popularity") or 0.0) + 0.01 for e in real))
    popularities = [float(e.get("popularity") or 0.0) for e in real]
    vectors = [vector(e) for e in real]
    words = sorted({w for e in real for w in str(e["title"]).split() if w.isalpha()})
    taken = {(str(e["title"]).lower(), str(e.get("artist", "")).lower()) for e in real}
    for number in range(count):
        (chosen,) = rng.choices(range(len(real)), cum_weights=cumulative)
        base = real[chosen]
        entity = {k: v for k, v in base.items() if k not in ("embedding_int8", "embedding_scale")}
        title = str(base["title"])
        artist = str(base.get("artist", ""))
        while (title.lower(), artist.lower()) in taken:
            title = f"{title} {rng.choice(words)}"
        taken.add((title.lower(), artist.lower()))
        entity["id"] = f"{base['entity_type']}:derived-{number}"
        entity["title"] = title
        if base["entity_type"] == "artist":
            entity["artist"] = title
        entity["popularity"] = rng.choice(popularities)
        turned = vectors[chosen] + noise.normal(0.0, NOISE, size=len(vectors[chosen]))
        entity["embedding_int8"], entity["embedding_scale"] = quantised(
            turned / np.linalg.norm(turned)
        )
        yield entity


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, required=True, help="in all, the real ones too")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--queries", type=int, default=1000, help="known-item queries to judge")
    parser.add_argument("--out", type=Path, required=True, help="the catalog (JSON Lines)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    noise = np.random.default_rng(args.seed)
    real = real_entities()
    if args.entities < len(real):
        parser.error(f"--entities must be at least the {len(real)} real ones")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    wanted = args.queries
    queries: list[tuple[str, str, str]] = []  # (query id, text, relevant entity id)
    with args.out.open("w", encoding="utf-8") as out:
        for entity in real:
            out.write(json.dumps(entity, ensure_ascii=False) + "\n")
        remaining = args.entities - len(real)
        for entity in derived(real, remaining, rng, noise):
            out.write(json.dumps(entity, ensure_ascii=False) + "\n")
            known = entity["entity_type"] in ("track", "album")
            # every k-th derived track or album, spread over the whole catalog
            if known and len(queries) < wanted and rng.random() < 2 * wanted / remaining:
                text = f"{entity['title']} {entity.get('artist', '')}".strip()
                queries.append((f"q{len(queries) + 1}", text, entity["id"]))
    stem = args.out.with_suffix("")
    with stem.with_suffix(".queries.tsv").open("w", encoding="utf-8") as tsv:
        tsv.writelines(f"{qid}\t{text}\n" for qid, text, _ in queries)
    with stem.with_suffix(".qrels.txt").open("w", encoding="utf-8") as qrels:
        qrels.writelines(f"{qid} 0 {doc} 1\n" for qid, _, doc in queries)
    print(
        f"wrote {args.entities} entities ({len(real)} real, {remaining} derived) to {args.out}, "
        f"{len(queries)} judged known-item queries beside it"
    )


if __name__ == "__main__":
    main()
