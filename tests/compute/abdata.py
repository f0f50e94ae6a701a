"""Raw objects for a build A/B: N points of one org, or the same points over many shards.

Written straight to a raw store as ingest would (objects + index records), no Kafka::

    python -m tests.compute.abdata --raw /tmp/ab/one --points 2000000 --orgs 1
    python -m tests.compute.abdata --raw /tmp/ab/spread --points 2000000 --orgs 64
    tailor build --raw /tmp/ab/one --out /tmp/ab/out --shard org-mod-7 --window 2026-01-01T00
    tailor build --raw /tmp/ab/spread --out /tmp/ab/out2 --all-shards --window 2026-01-01T00

Orgs are 7, 8, … (one shared shard each while there are at most 64); every
point lies in window 2026-01-01T00; payloads hold ``--per-payload`` points of
an org's ``--series`` series; an org's payloads are spread over
``--objects`` raw objects.
"""

from __future__ import annotations

import argparse

import numpy as np

from tailor.config import StoreConfig
from tailor.storage import Store

from .rawgen import T0, Gen, W, make_points, write_object


def write(raw: Store, points: int, orgs: int, *, per_payload: int = 2000, series: int = 20000,
          objects: int = 8, seed: int = 0) -> int:
    """Write the objects; returns the number of points written."""
    rng = np.random.default_rng(seed)
    per_org = points // orgs
    intake = 1_767_300_000_000_000_000
    total = 0
    for k in range(orgs):
        org = 7 + k
        keys = [(int(a), int(b)) for a, b in rng.integers(0, 2**63, (max(1, series // orgs), 2))]
        gens = []
        for a in range(0, per_org, per_payload):
            intake += 1
            gens.append(Gen(org, intake, make_points(rng, min(per_payload, per_org - a),
                                                     series=keys, ts_lo=T0, ts_hi=T0 + W)))
        n_obj = max(1, min(objects, len(gens)))
        for i in range(n_obj):
            write_object(raw, f"org-mod-{org % 64}", gens[i::n_obj])
        total += sum(len(g.points) for g in gens)
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--raw", required=True, help="raw store directory (or s3://…)")
    ap.add_argument("--points", type=int, default=2_000_000)
    ap.add_argument("--orgs", type=int, default=1)
    ap.add_argument("--per-payload", type=int, default=2000)
    ap.add_argument("--series", type=int, default=20000, help="series over all orgs")
    ap.add_argument("--objects", type=int, default=8, help="raw objects per org")
    a = ap.parse_args()
    n = write(Store(StoreConfig(url=a.raw)), a.points, a.orgs, per_payload=a.per_payload,
              series=a.series, objects=a.objects)
    print(f"wrote {n} points of {a.orgs} org(s) to {a.raw}")


if __name__ == "__main__":
    main()
