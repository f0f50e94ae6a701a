"""`tailor gc` and the leftovers `tailor status` reports (issue 10 item 11), on moto S3."""

from __future__ import annotations

import json
import time

import boto3
import numpy as np
from click.testing import CliRunner

from tailor.cli import main
from tailor.compute import publish as pub
from tailor.compute.decode import Points
from tailor.config import StoreConfig
from tailor.format import layout
from tailor.ops import gc
from tailor.storage import Store
from tailor.testing.services import S3Server
from tests.compute.rawgen import T0, W, mixed_payloads, write_object

SHARD = "org-mod-7"


def test_plan_raw_is_pure_and_spares_recent_objects() -> None:
    objs = [("objects/ab12/org-mod-7/b1.tlr", 10, 100), ("objects/ab12/org-mod-7/b2.tlr", 20, 100),
            ("objects/cd34/org-mod-8/b3.tlr", 30, 900), ("objects/junk", 1, 0)]
    left = gc.plan_raw(objs, {"org-mod-7": ["b1"]}, [("objects/x", "u1", 5), ("y", "u2", 999)],
                       cutoff_ns=500)
    assert [k for k, _, _ in left.unindexed] == ["objects/ab12/org-mod-7/b2.tlr"]
    assert left.young_unindexed == 1 and left.unindexed_bytes == 20
    assert [u[1] for u in left.uploads] == ["u1"] and left.young_uploads == 1


def test_unindexed_objects_and_incomplete_uploads(s3: S3Server, raw_store: StoreConfig,
                                                  out_store: StoreConfig) -> None:
    raw = Store(raw_store)
    kept, _ = write_object(raw, SHARD, mixed_payloads(seed=3, n_payloads=6))
    orphan = layout.object_key(SHARD, "crashed-before-index")
    raw.put(orphan, b"frames nobody indexed")
    bucket, _, prefix = raw_store.url[len("s3://"):].partition("/")
    s3c = boto3.client("s3", endpoint_url=s3.endpoint_url, region_name="us-east-1")
    up = s3c.create_multipart_upload(Bucket=bucket, Key=f"{prefix}/objects/ffff/{SHARD}/x.tlr")
    s3c.upload_part(Bucket=bucket, Key=f"{prefix}/objects/ffff/{SHARD}/x.tlr", PartNumber=1,
                    UploadId=up["UploadId"], Body=b"x" * 1024)

    # status counts them (the object is too recent for removal; moto dates every
    # upload 2010-11-10, so the upload counts as old)
    res = CliRunner().invoke(main, ["status", "--raw", raw_store.url, "--out", out_store.url,
                                    "--s3-endpoint-url", s3.endpoint_url, "--json"])
    assert res.exit_code == 0, res.output
    left = json.loads(res.output)["raw_leftovers"]
    assert left["recent_unindexed_objects"] == 1 and left["unindexed_objects"] == 0
    assert left["recent_incomplete_uploads"] + left["incomplete_uploads"] == 1

    found = gc.find_raw(raw, time.time_ns() + 10**9)  # everything counts as old
    assert [k for k, _, _ in found.unindexed] == [orphan]
    assert [(k, u) for k, u, _ in found.uploads] == [(f"objects/ffff/{SHARD}/x.tlr",
                                                     up["UploadId"])]
    raw.delete([k for k, _, _ in found.unindexed])
    for key, upload, _ in found.uploads:
        raw.abort_upload(key, upload)
    raw.abort_upload(found.uploads[0][0], found.uploads[0][1])  # twice: a no-op
    after = gc.find_raw(raw, time.time_ns() + 10**9)
    assert not after.unindexed and not after.uploads
    assert raw.exists(kept) and not raw.exists(orphan)

    # the CLI refuses a cutoff that could catch an object between its PUT and its index
    res = CliRunner().invoke(main, ["gc", "--raw", raw_store.url, "--older-than", "10m"])
    assert res.exit_code == 2 and "one hour" in res.output


def _rows() -> Points:
    return Points(np.full(2, 7, np.uint32), np.ones(2, np.uint64), np.arange(2, dtype=np.uint64),
                  np.full(2, T0 + 1, np.uint32), np.ones(2), np.zeros(2, np.uint64),
                  np.zeros(2, np.uint32))


def test_gc_out_removes_only_files_no_manifest_can_list(out_store: StoreConfig) -> None:
    out = Store(out_store)
    counts = dict(min_ts=None, max_ts=None, corrupt=0, invalid=0, duplicates=0)
    a, b = pub.new_attempt(), pub.new_attempt()
    pa = [pub.write_part(out, SHARD, T0, a, 0, _rows())]
    pub.publish(out, SHARD, T0, W, a, pa, [], **counts)
    # a crashed attempt (unclaimed, two days old) and a young one still building
    old = f"{time.time_ns() - 48 * pub.HOUR_NS:x}-0ld0ld00"
    pub.write_part(out, SHARD, T0, old, 0, _rows())
    pub.write_part(out, SHARD, T0, b, 0, _rows())
    # an unpublished chunk folder left by a crashed attempt
    pub.write_part(out, SHARD, T0 + W, old, 0, _rows())
    res = CliRunner().invoke(main, ["gc", "--out", out_store.url, "--s3-endpoint-url",
                                    out_store.s3_endpoint_url or "", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    want = sorted([layout.part_key(SHARD, T0, old, 0), layout.part_key(SHARD, T0 + W, old, 0)])
    assert sorted(doc["out"]) == want and not doc["deleted"]
    assert all(out.exists(k) for k in want)  # a dry run
    res = CliRunner().invoke(main, ["gc", "--out", out_store.url, "--s3-endpoint-url",
                                    out_store.s3_endpoint_url or "", "--delete"])
    assert res.exit_code == 0, res.output
    assert not any(out.exists(k) for k in want)
    assert out.exists(layout.part_key(SHARD, T0, a, 0))  # published
    assert out.exists(layout.part_key(SHARD, T0, b, 0))  # may still publish
