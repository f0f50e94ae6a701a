"""``tailor demo``: the whole pipeline on services it starts itself, then verified.

Starts a Tansu broker (loopback, free port), a store (a directory, or a moto
S3 server with ``--s3``) and a Dask ``LocalCluster``; produces a synthetic
stream with :func:`tailor.testing.produce.run`, runs ``tailor ingest`` as a subprocess
until idle, builds every ready chunk with ``build --ready``'s runner, checks
every published chunk against the generator's expected outcome and prints a
summary.  The check is an outside reader's: each chunk's manifest as plain
JSON, its files read in manifest order and compared row for row, values bit
for bit, with the expected outcome.  Everything it starts is stopped when it
returns, fails or is interrupted (Ctrl-C): services are context managers on
one ``ExitStack``.

The workdir holds ``shards.yaml`` (8 shared shards; the biggest org moves to
a dedicated shard in the middle of the first window, to show resharding),
``raw/``, ``out/`` (the S files), ``expected/`` and ``logs/``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tailor.config import BuildConfig, ProduceConfig, StoreConfig
from tailor.errors import ConfigError, TailorError
from tailor.format.layout import HOUR, stamp
from tailor.storage import Store
from tailor.testing import services

MARKER = ".tailor-demo"
TOPICS = ["points-a", "points-b"]
PARTITIONS = 4
START = 1767225600  # 2026-01-01T00:00:00Z
HOURS = 8.0
SHARED_SHARDS = 8
BUCKET = "tailor-demo"


def _say(msg: str) -> None:
    print(f"tailor demo: {msg}", flush=True)


def _prepare(workdir: str | None) -> Path:
    """A fresh workdir: a new temporary one, or ``workdir`` (empty, or a previous demo's)."""
    if workdir is None:
        return Path(tempfile.mkdtemp(prefix="tailor-demo-"))
    root = Path(workdir).resolve()
    if root.exists() and any(root.iterdir()):
        if not (root / MARKER).exists():
            raise ConfigError(f"--workdir {str(root)!r} is not empty and not a demo workdir",
                              fix="pass an empty or new directory (or omit --workdir)")
        for sub in ("raw", "out", "expected", "logs", "shards.yaml"):
            p = root / sub
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).write_text("made by `tailor demo`; its contents are replaced on reuse\n")
    return root


def _shards_yaml(root: Path, cfg: ProduceConfig) -> tuple[Path, int]:
    """Write the demo's shards.yaml: the biggest org moves out at START + 2 h."""
    from tailor.testing.stream import generate

    s = generate(cfg)
    orgs, inv = np.unique(s.pay_org, return_inverse=True)
    biggest = int(orgs[np.argmax(np.bincount(inv, weights=s.pay_n))])
    path = root / "shards.yaml"
    path.write_text(
        "# Written by `tailor demo`.\n"
        f"shared_shards: {SHARED_SHARDS}\n"
        "dedicated:\n"
        f"  - org: {biggest}  # the biggest org gets its own shard mid-window\n"
        f"    since: {stamp(START + 2 * HOUR)}:00:00Z\n")
    return path, biggest


@contextlib.contextmanager
def _subprocess(cmd: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``cmd``; on exit (or Ctrl-C) SIGINT it, then SIGKILL after 30 s."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _count_quarantined(raw: Store) -> int:
    n = 0
    for k in raw.list("quarantine/"):
        n += sum(1 for line in raw.get(k).splitlines() if line.strip())
    return n


def _stage_seconds(client: Any) -> dict[str, float]:
    """Seconds per build stage (Dask fine performance metrics), best effort."""
    from tailor.compute.monitor import cumulative_metrics, stage_seconds
    from tailor.metrics import STAGES

    out = dict.fromkeys(STAGES, 0.0)
    try:
        got = stage_seconds(cumulative_metrics(client))
    except Exception:  # metrics are a nicety: never fail the demo for them
        return {}
    for (stage, _task), v in got.items():
        out[stage] += v
    return out if any(out.values()) else {}


@dataclass
class _Timer:
    seconds: float = 0.0

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        t0 = time.monotonic()
        try:
            yield
        finally:
            self.seconds = time.monotonic() - t0


def _first_difference(store: Store, shard: str, start: int, want: pa.Table) -> str | None:
    """None when the chunk's files, read in the order its manifest lists them, hold
    ``want``'s rows in ``want``'s order (values bit for bit); else the first difference.

    An outside reader's check: the manifest is read as plain JSON and the files
    with pyarrow alone (no Tailor reader or diff code), so unsorted rows, files
    listed out of order and changed NaN bits all count.
    """
    folder = f"{shard}/{stamp(start)}"
    manifest = json.loads(store.get(f"{folder}/_manifest.json"))
    tables = []
    for f in manifest["files"]:
        t = pq.read_table(pa.BufferReader(store.get(f"{folder}/{f['path']}")))
        if not t.schema.equals(want.schema):
            return f"{f['path']} has schema {t.schema}, expected {want.schema}"
        tables.append(t)
    got = pa.concat_tables(tables) if tables else want.schema.empty_table()
    if got.num_rows != want.num_rows:
        return f"{got.num_rows} rows, expected {want.num_rows}"
    for name in want.column_names:
        a, b = got[name].to_numpy(), want[name].to_numpy()
        if name == "value":
            a, b = a.view(np.uint64), b.view(np.uint64)
        bad = np.flatnonzero(a != b)
        if len(bad):
            return (f"row {int(bad[0])} (in manifest order) has {name} {a[bad[0]]}, expected "
                    f"{b[bad[0]]}; {len(bad)} rows differ")
    return None


def _rate(n: float, s: float) -> str:
    r = n / max(s, 1e-9)
    return f"{r / 1e6:.2f} M/s" if r >= 1e6 else f"{r / 1e3:.1f} k/s"


def run(points: int = 200_000, workdir: str | None = None, use_s3: bool = False) -> int:
    """Run the demo; 0 when the output matches the expected outcome, 1 when not.

    Ctrl-C (SIGINT) stops every service and subprocess it started and returns 130.
    """
    try:
        return _run(points, workdir, use_s3)
    except KeyboardInterrupt:
        _say("interrupted: broker, store, cluster and ingest are stopped")
        return 130


def _run(points: int, workdir: str | None, use_s3: bool) -> int:
    t_all = time.monotonic()
    root = _prepare(workdir)
    (root / "logs").mkdir(exist_ok=True)
    _say(f"workdir {root}")
    with contextlib.ExitStack() as stack:
        # -- services ------------------------------------------------------------------
        broker = stack.enter_context(services.broker(str(root / "logs" / "tansu.log")))
        _say(f"Kafka (Tansu) broker on {broker.bootstrap} (pid {broker.proc.pid})")
        endpoint: str | None = None
        if use_s3:
            # moto accepts any credentials; never send real ones anywhere from the demo.
            os.environ.update(AWS_ACCESS_KEY_ID="demo", AWS_SECRET_ACCESS_KEY="demo",
                              AWS_DEFAULT_REGION="us-east-1")
            for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
                os.environ.pop(k, None)
            logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
            s3 = services.start_s3()
            stack.callback(s3.close)
            endpoint = s3.endpoint_url
            services.create_bucket(endpoint, BUCKET)
            raw_url, out_url = f"s3://{BUCKET}/raw", f"s3://{BUCKET}/out"
            _say(f"S3 (moto) on {endpoint}, bucket {BUCKET}")
        else:
            raw_url, out_url = str(root / "raw"), str(root / "out")
        raw = StoreConfig(url=raw_url, s3_endpoint_url=endpoint)
        out = StoreConfig(url=out_url, s3_endpoint_url=endpoint)

        # -- produce ---------------------------------------------------------------------
        from tailor.testing.produce import run as produce

        pcfg = ProduceConfig(brokers=broker.bootstrap, topics=TOPICS, partitions=PARTITIONS,
                             points=points, start=START, hours=HOURS,
                             expected=str(root / "expected"))
        shards_path, moved_org = _shards_yaml(root, pcfg)
        pcfg = pcfg.model_copy(update={"shards_file": str(shards_path)})
        _say(f"producing {points} points to {', '.join(TOPICS)} ...")
        prep = produce(pcfg)

        # -- ingest ----------------------------------------------------------------------
        cmd = [sys.executable, "-m", "tailor", "ingest", "--brokers", broker.bootstrap,
               "--topics", ",".join(TOPICS), "--group", "tailor-demo", "--raw", raw_url,
               "--shards", str(shards_path), "--flush-age", "2s", "--exit-when-idle", "3s"]
        if endpoint:
            cmd += ["--s3-endpoint-url", endpoint]
        _say("ingesting (tailor ingest, until idle) ...")
        t_ing = _Timer()
        with t_ing(), _subprocess(cmd, root / "logs" / "ingest.log") as proc:
            try:
                rc = proc.wait(600)
            except subprocess.TimeoutExpired:
                rc = -1
        if rc != 0:
            raise TailorError(f"tailor ingest exited with {rc}", log=str(root / "logs/ingest.log"),
                              fix="read the ingest log")
        raw_store = Store(raw)
        quarantined = _count_quarantined(raw_store)

        # -- build -----------------------------------------------------------------------
        from distributed import Client

        from tailor.compute.build import local_cluster
        from tailor.compute.ready import build_ready
        from tailor.shards import load

        smap = load(str(shards_path))
        bcfg = BuildConfig(raw=raw, out=out, shards=smap.all_shards(), windows=[],
                           shards_file=str(shards_path), ready=True)
        t_cluster = _Timer()
        with t_cluster():
            cluster = stack.enter_context(local_cluster(2, processes=False))  # as `tailor build`
            client = stack.enter_context(Client(cluster))  # type: ignore[no-untyped-call]
        from tailor.compute.warm import warm

        t_kernels = _Timer()  # in-process workers share these; the build's warm-up is then a no-op
        with t_kernels():
            warm()
        dashboard = client.dashboard_link
        _say(f"Dask dashboard {dashboard}")
        _say("building every ready chunk (tailor build --ready) ...")
        t_build = _Timer()
        with t_build():
            report = build_ready(bcfg, client, echo=_say)
        stages = _stage_seconds(client)

        # -- verify ----------------------------------------------------------------------
        from tailor.compute.diff import list_chunks
        from tailor.testing.oracle import load_expected

        t_ver = _Timer()
        problems: list[str] = [f"{o.label}: {o.status} {o.detail}" for o in report.outcomes
                               if o.status != "built"]
        out_store = Store(out)
        with t_ver():
            expected = load_expected(root / "expected").chunks
            published = list_chunks(out_store)
            for key in sorted(set(published) - set(expected)):
                problems.append(f"{key[0]}/{stamp(key[1])}: published but not expected")
            n_out = size = dups = 0
            for (shard, start), table in sorted(expected.items()):
                if (shard, start) not in published:
                    problems.append(f"{shard}/{stamp(start)}: expected but not published")
                    continue
                diff = _first_difference(out_store, shard, start, table)
                if diff is not None:
                    problems.append(f"{shard}/{stamp(start)}: {diff}")
            from tailor.compute.status import load_manifests

            for m in load_manifests(out_store, smap.all_shards()).values():
                n_out += m.points
                size += sum(f.bytes for f in m.files)
                dups += m.duplicates_dropped
            invalid_sent = sum(prep.invalid.values())
            if quarantined != invalid_sent:
                problems.append(f"{invalid_sent} invalid payloads sent, {quarantined} quarantined")

        # -- summary ---------------------------------------------------------------------
        big = max(expected.items(), key=lambda kv: kv[1].num_rows)
        row = big[1].slice(0, 1).to_pylist()[0]
        s3flag = f" --s3-endpoint-url {endpoint}" if endpoint else ""
        read_cmd = (f"tailor read --out {out_url}{s3flag} --shards {shards_path} "
                    f"--org {row['org_id']} --metric {row['metric_id']} "
                    f"--context {row['context_key']}")
        ing_s, b_s = t_ing.seconds, t_build.seconds
        lines = [
            "",
            "=" * 72,
            ("VERIFIED: every chunk equals the generator's expected outcome" if not problems
             else f"MISMATCH: {len(problems)} problem(s)"),
            *[f"  ! {p}" for p in problems[:20]],
            f"points in    {prep.points} in {prep.valid} valid payloads "
            f"(+{prep.duplicates} duplicate deliveries)",
            f"invalid      {invalid_sent} sent, {quarantined} quarantined "
            f"(under {raw_url}/quarantine)",
            f"points out   {n_out} unique points in {len(published)} chunks "
            f"({dups} duplicate points dropped)",
            f"size         {size} bytes of Parquet: {size / max(n_out, 1):.2f} bytes/point",
            f"produce      {prep.seconds:.1f} s ({_rate(prep.points, prep.seconds)} points)",
            f"ingest       {ing_s:.1f} s wall incl. group join and 3 s idle exit "
            f"({_rate(prep.points, ing_s)} points)",
            f"start-up     {t_cluster.seconds + t_kernels.seconds:.1f} s before the build, once "
            f"per process: Dask cluster {t_cluster.seconds:.2f} s, numba kernels loaded "
            f"{t_kernels.seconds:.2f} s",
            f"build        {b_s:.1f} s for {len(report.by('built'))} chunks: {n_out} points "
            f"at {_rate(n_out, b_s)} (start-up not included)",
        ]
        work = sum(stages.values())
        if work > 0:
            lines.append(f"  throughput {_rate(n_out, work)} points per worker-second of stage "
                         f"time ({work:.2f} worker-s); the rest of the build is planning, "
                         "scheduling and publishing, a cost per chunk, not per point")
        if stages:
            lines.append("  stages     " + ", ".join(f"{k} {v:.2f} s" for k, v in stages.items())
                         + " (task time summed over workers)")
        lines += [
            f"verify       {t_ver.seconds:.1f} s",
            f"resharding   org {moved_org} moves to org-{moved_org} at "
            f"{stamp(START + 2 * HOUR)}:00Z (mid-window; see shards.yaml)",
            f"S files      {out_url}",
            f"dashboard    {dashboard} (closes with the demo)",
            f"status       tailor status --raw {raw_url} --out {out_url}{s3flag} "
            f"--shards {shards_path}",
            f"read         {read_cmd}",
        ]
        if endpoint:
            lines.append("             (S3 commands work while a moto server runs there; "
                         "this one stops with the demo)")
        lines += [f"total        {time.monotonic() - t_all:.1f} s", "=" * 72]
        print("\n".join(lines), flush=True)
        _say("stopping the cluster and services ...")
    return 1 if problems else 0
