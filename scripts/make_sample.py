"""Build the sample catalog `ltrr quickstart` ingests: a few thousand entities of the real music
data, with their sentence vectors precomputed (so nothing is encoded on a first run).

    .venv/bin/python scripts/make_sample.py [--music-dir ../shared/data/music] [--artists 60]

The most popular artists, each with all their albums and tracks, until the sample holds about
`--entities` entities, plus the tracks the demo queries name. Vectors are stored as int8 with a
scale per vector (cosine against the float vector: above 0.999), base64, one JSON line per
entity, gzip'd into ltrr_os/catalog/data/music-sample.jsonl.gz."""

from __future__ import annotations

import argparse
import base64
import gzip
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from ltrr_os.catalog import build_music_catalog, prepare_entity
from ltrr_os.config import load_schema
from ltrr_os.embedding import load_encoder

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "ltrr_os" / "catalog" / "data" / "music-sample.jsonl.gz"
MUST = {"Taylor Swift", "Queen", "AC/DC", "Dolly Parton", "The Lumineers", "KT Tunstall"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--music-dir", type=Path, default=REPO.parent / "shared/data/music")
    parser.add_argument("--entities", type=int, default=3000)
    args = parser.parse_args()
    catalog = build_music_catalog(args.music_dir)
    by_artist: dict[str, list[dict[str, object]]] = defaultdict(list)
    for entity in catalog.entities:
        by_artist[str(entity.get("artist", ""))].append(entity)
    artists = sorted(
        (e for e in catalog.entities if e["entity_type"] == "artist"),
        key=lambda e: (e["artist"] not in MUST, -float(e.get("popularity") or 0), e["id"]),
    )
    chosen: list[dict[str, object]] = []
    for artist in artists:
        if len(chosen) >= args.entities:
            break
        chosen += by_artist[str(artist["artist"])]
    schema = load_schema("music")
    encoder = load_encoder()
    texts = [
        schema.embedding_text(prepare_entity(schema, e, "sample")) or str(e["id"]) for e in chosen
    ]
    vectors = np.asarray(encoder.encode(texts), dtype=np.float32)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(OUT, "wt", encoding="utf-8", compresslevel=9) as out:
        for entity, vector in zip(chosen, vectors, strict=True):
            scale = float(np.abs(vector).max()) / 127 or 1.0
            quantised = np.round(vector / scale).astype(np.int8)
            record = {k: v for k, v in entity.items() if k != "sources"}
            record["embedding_int8"] = base64.b64encode(quantised.tobytes()).decode()
            record["embedding_scale"] = scale
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    print(f"wrote {len(chosen)} entities to {OUT} ({OUT.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
