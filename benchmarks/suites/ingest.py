"""Ingest suite: ``tailor ingest`` beside the bare aiokafka fetch loop, one Tansu broker.

The records are produced once; the producer's acknowledged offsets are the
truth for "every record".  Per round: one ``tailor ingest`` (fresh consumer
group, fresh raw store; clock from its first consumed records to the last
offset committed on the broker, see :mod:`benchmarks.ingestrun`), one bare
fetch loop, and the same loop running the contract's payload checks.

A round counts only when it is complete: the ingester exited 0, its group
committed every acknowledged offset, and its raw store holds every valid
payload and its quarantine every invalid one; the bare loops read every
record.  Failed rounds are shown with their reason and never enter a median.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from benchmarks import kafka
from benchmarks.ingestrun import IngestResult, run_ingest
from benchmarks.names import BARE, BARE_VALID, INGEST
from benchmarks.results import Profile, Results, Run, Section
from benchmarks.workload import PARTITIONS, TOPICS, Prepared, log


def raw_store_problems(raw_dir: str, valid: int, invalid: int) -> list[str]:
    """What a complete ingest's raw store lacks: every valid payload in an object
    (counted once per object over its index records), every invalid one in the
    quarantine (read with the product's own readers, whatever their layout)."""
    from tailor.config import StoreConfig
    from tailor.format.records import ObjectRecord
    from tailor.ingest import quarantine
    from tailor.storage import Store

    store = Store(StoreConfig(url=raw_dir))
    per_object: dict[str, int] = {}
    for key in store.list("index"):
        rec = ObjectRecord.model_validate_json(store.get(key))
        per_object[rec.key] = rec.payloads
    quarantined = sum(len(quarantine.read(store, k)) for k in store.list("quarantine"))
    out = []
    if sum(per_object.values()) != valid:
        out.append(f"raw store holds {sum(per_object.values()):,} payloads, "
                   f"{valid:,} valid were produced")
    if quarantined != invalid:
        out.append(f"quarantine holds {quarantined:,} records, {invalid:,} invalid were produced")
    return out


def _ingest_run(rnd: int, r: IngestResult, raw: str, prep: Prepared) -> Run:
    problems = r.problems()
    if not problems:
        problems = raw_store_problems(raw, len(prep.valid), prep.invalid)
    extra = {"end_to_end_s": r.end_to_end_s, "peak_rss": float(r.peak_rss)}
    if r.records > 0 and r.seconds > 0:  # else the first sample already held every record
        extra |= {"mb_per_s": r.mb_per_s, "payloads_per_s": r.payloads_per_s}
    return Run(round=rnd, seconds=r.seconds if r.seconds == r.seconds else 0.0,
               exit_code=r.exit_code, checked=True, problems=problems, extra=extra)


def _fetch_run(rnd: int, fn: Callable[[], kafka.FetchResult], total: int) -> Run:
    try:
        f = fn()
    except (TimeoutError, OSError) as exc:
        return Run(round=rnd, seconds=0.0, exit_code=1, problems=[str(exc)])
    problems = [] if f.total_records == total else [
        f"read {f.total_records:,} of {total:,} records"]
    extra = ({"mb_per_s": f.mb_per_s, "payloads_per_s": f.payloads_per_s}
             if f.records > 0 and f.seconds > 0 else {})
    return Run(round=rnd, seconds=f.seconds, checked=True, problems=problems, extra=extra)


def run(a: argparse.Namespace, prep: Prepared, work: Path, res: Results,
        save: Callable[[], None]) -> str | None:
    """Run the suite; returns round 1's raw store when it is complete (for the build)."""
    from tailor.testing import services

    sec = res.ingest = res.ingest or Section(points=prep.points)
    first_raw: str | None = None
    b = services.start_broker(str(work / "tansu.log"))
    try:
        asyncio.run(services.create_topics(b.bootstrap, list(TOPICS), PARTITIONS))
        t0 = time.perf_counter()
        ends = kafka.produce(b.bootstrap, prep.records)
        log(f"produced {len(prep.records):,} records in {time.perf_counter() - t0:.1f} s")
        if sum(ends.values()) != len(prep.records):
            sec.notes.append(f"the producer's acknowledged offsets cover "
                             f"{sum(ends.values()):,} of {len(prep.records):,} records")
        rounds = a.runs if not a.no_ingest else 1
        for i in range(rounds):
            raw = str(work / f"raw-ingest-{i}")
            r = run_ingest(b.bootstrap, TOPICS, raw, f"bench-{uuid.uuid4().hex[:8]}", ends,
                           log_path=str(work / "ingest.log"))
            ir = _ingest_run(i + 1, r, raw, prep)
            sec.system(INGEST, "tailor").runs.append(ir)
            ok = not ir.problems and ir.exit_code == 0
            if ok and first_raw is None:
                first_raw = raw
            else:
                shutil.rmtree(raw, ignore_errors=True)
            log(f"ingest round {i + 1}: {r.mb_per_s:.1f} MB/s, {r.consumed:,}/{r.total:,} "
                f"consumed, {'complete' if ok else 'DOES NOT COUNT: ' + '; '.join(ir.problems)}")
            if a.no_ingest:
                break
            for name, validate in ((BARE, False), (BARE_VALID, True)):
                fr = _fetch_run(i + 1, lambda v=validate: kafka.bare_fetch(  # type: ignore[misc]
                    b.bootstrap, ends, validate=v), len(prep.records))
                sec.system(name, "reference").runs.append(fr)
                log(f"ingest round {i + 1} {name}: {fr.extra.get('mb_per_s', 0):.1f} MB/s"
                    + ("" if not fr.problems else f" DOES NOT COUNT: {fr.problems}"))
            save()
        for run_ in sec.system(INGEST, "tailor").runs:
            if "peak_rss" in run_.extra and not run_.problems:
                res.add_memory("1×", "ingester", run_.extra["peak_rss"])
        if a.profile and not a.no_ingest:
            res.ingest_profile = _profile(b.bootstrap, ends, work)
            save()
    finally:
        b.close()
    if a.no_ingest:
        res.ingest = None
    return first_raw


def _profile(bootstrap: str, ends: dict[tuple[str, int], int], work: Path) -> Profile:
    from benchmarks.profile import inclusive, top_frames

    prof = str(work / "ingest.pyspy.txt")
    raw = work / "raw-ingest-profile"
    try:
        pr = run_ingest(bootstrap, TOPICS, str(raw), f"bench-{uuid.uuid4().hex[:8]}", ends,
                        log_path=str(work / "ingest.log"), profile=prof)
    except (OSError, RuntimeError) as exc:
        return Profile(note=f"py-spy profile of ingest failed: {exc}")
    finally:
        shutil.rmtree(raw, ignore_errors=True)
    return Profile(
        note=f"py-spy profile: one extra ingest ({pr.mb_per_s:.1f} MB/s under the profiler), "
             f"raw stacks in {prof}",
        self_time=top_frames(prof, 12),
        inclusive=inclusive(prof, r"\((consumer|batcher|writer|quarantine|payload|framing|"
                                  r"storage|classify|validate_batch)\.py\)", 15))
