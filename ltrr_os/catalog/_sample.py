"""The sample catalog shipped in the package: a few thousand entities of the music data with
their sentence vectors precomputed (int8 with a scale per vector), so a first run ingests in
seconds and encodes nothing (`ltrr quickstart`; built by scripts/make_sample.py)."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from importlib import resources

from ._readers import SourceRow

SAMPLE = "music-sample.jsonl.gz"


def sample_rows() -> Iterator[SourceRow]:
    """The sample's entities, each with its int8 vector and scale, ready for `ingest_rows`."""
    data = resources.files("ltrr_os.catalog").joinpath("data", SAMPLE)
    with data.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            yield SourceRow(SAMPLE, number, json.loads(line))
