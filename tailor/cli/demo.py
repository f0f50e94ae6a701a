"""``tailor demo``: the whole pipeline on services it starts itself, then verified.

Starts a Tansu broker (loopback, free port), a store (a directory, or a moto
S3 server with ``--s3``) and a Dask ``LocalCluster``; produces a synthetic
stream with :func:`tailor.testing.produce.run`, runs ``tailor ingest`` as a subprocess
until idle, builds every ready chunk with ``build --ready``'s runner, checks
every published chunk against the generator's expected outcome and prints a
summary.  The phases are functions here, in order (services, produce,
ingest, build); the check, an outside reader's, and the summary are
:mod:`tailor.cli.demo_report`.  Everything it starts is stopped when it
returns, fails or is interrupted (Ctrl-C): services are context managers on
one ``ExitStack``.

The workdir holds ``shards.yaml`` (8 shared shards; the biggest org moves to
a dedicated shard in the middle of the first window, to show resharding),
``raw/``, ``out/`` (the S files), ``expected/`` and ``logs/``.
"""

from __future__ import annotations

import contextlib
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
from typing import TYPE_CHECKING, Any

import numpy as np

from tailor.cli.demo_report import Run, summary_lines, verify
from tailor.config import BuildConfig, ProduceConfig, StoreConfig
from tailor.errors import ConfigError, TailorError
from tailor.format.layout import HOUR, stamp
from tailor.storage import Store
from tailor.testing import services

if TYPE_CHECKING:
    from tailor.ops.ready import ReadyReport
    from tailor.shards import ShardMap
    from tailor.testing.produce import ProduceReport

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


@dataclass
class _Stores:
    raw_url: str
    out_url: str
    endpoint: str | None  # the moto server's, with --s3

    @property
    def raw(self) -> StoreConfig:
        return StoreConfig(url=self.raw_url, s3_endpoint_url=self.endpoint)

    @property
    def out(self) -> StoreConfig:
        return StoreConfig(url=self.out_url, s3_endpoint_url=self.endpoint)


def _start_services(stack: contextlib.ExitStack[Any], root: Path, use_s3: bool
                    ) -> tuple[services.Broker, _Stores]:
    """Phase 1: the broker and the store (a directory, or a moto S3 server), on ``stack``."""
    broker = stack.enter_context(services.broker(str(root / "logs" / "tansu.log")))
    _say(f"Kafka (Tansu) broker on {broker.bootstrap} (pid {broker.proc.pid})")
    if not use_s3:
        return broker, _Stores(str(root / "raw"), str(root / "out"), None)
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
    _say(f"S3 (moto) on {endpoint}, bucket {BUCKET}")
    return broker, _Stores(f"s3://{BUCKET}/raw", f"s3://{BUCKET}/out", endpoint)


def _produce(root: Path, bootstrap: str, points: int) -> tuple[ProduceReport, Path, int]:
    """Phase 2: the shards.yaml, then the stream sent and its expected outcome written.

    Returns what was sent, the shards.yaml and the org it moves to a dedicated shard.
    """
    from tailor.testing.produce import run as produce

    pcfg = ProduceConfig(brokers=bootstrap, topics=TOPICS, partitions=PARTITIONS,
                         points=points, start=START, hours=HOURS,
                         expected=str(root / "expected"))
    shards_path, moved_org = _shards_yaml(root, pcfg)
    pcfg = pcfg.model_copy(update={"shards_file": str(shards_path)})
    _say(f"producing {points} points to {', '.join(TOPICS)} ...")
    return produce(pcfg), shards_path, moved_org


def _ingest(root: Path, bootstrap: str, stores: _Stores, shards_path: Path) -> tuple[float, int]:
    """Phase 3: ``tailor ingest`` as a subprocess until idle; its seconds and the quarantined.

    Raises :class:`TailorError` if it exits non-zero or runs over 10 minutes.
    """
    cmd = [sys.executable, "-m", "tailor", "ingest", "--brokers", bootstrap,
           "--topics", ",".join(TOPICS), "--group", "tailor-demo", "--raw", stores.raw_url,
           "--shards", str(shards_path), "--flush-age", "2s", "--exit-when-idle", "3s"]
    if stores.endpoint:
        cmd += ["--s3-endpoint-url", stores.endpoint]
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
    return t_ing.seconds, _count_quarantined(Store(stores.raw))


@dataclass
class _Built:
    report: ReadyReport
    shard_map: ShardMap
    dashboard: str
    stages: dict[str, float]
    cluster_s: float
    kernels_s: float
    build_s: float


def _build(stack: contextlib.ExitStack[Any], stores: _Stores, shards_path: Path) -> _Built:
    """Phase 4: a local Dask cluster on ``stack`` (as `tailor build`), every ready chunk built."""
    from distributed import Client

    from tailor.compute.build import local_cluster
    from tailor.compute.warm import warm
    from tailor.ops.ready import build_ready
    from tailor.shards import load

    shard_map = load(str(shards_path))
    bcfg = BuildConfig(raw=stores.raw, out=stores.out, shards=shard_map.all_shards(), windows=[],
                       shards_file=str(shards_path), ready=True)
    t_cluster = _Timer()
    with t_cluster():
        cluster = stack.enter_context(local_cluster(2, processes=False))  # as `tailor build`
        client = stack.enter_context(Client(cluster))  # type: ignore[no-untyped-call]
    t_kernels = _Timer()  # in-process workers share these; the build's warm-up is then a no-op
    with t_kernels():
        warm()
    dashboard = client.dashboard_link
    _say(f"Dask dashboard {dashboard}")
    _say("building every ready chunk (tailor build --ready) ...")
    t_build = _Timer()
    with t_build():
        report = build_ready(bcfg, client, echo=_say)
    return _Built(report, shard_map, dashboard, _stage_seconds(client), t_cluster.seconds,
                  t_kernels.seconds, t_build.seconds)


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
        broker, stores = _start_services(stack, root, use_s3)
        prep, shards_path, moved_org = _produce(root, broker.bootstrap, points)
        ingest_s, quarantined = _ingest(root, broker.bootstrap, stores, shards_path)
        built = _build(stack, stores, shards_path)
        checked = verify(root / "expected", stores.out, built.report, built.shard_map, prep,
                         quarantined)
        run = Run(raw_url=stores.raw_url, out_url=stores.out_url, endpoint=stores.endpoint,
                  shards_path=shards_path, moved_org=moved_org, moved_at=START + 2 * HOUR,
                  prep=prep, quarantined=quarantined, ingest_s=ingest_s,
                  cluster_s=built.cluster_s, kernels_s=built.kernels_s,
                  build_s=built.build_s, built=len(built.report.by("built")),
                  stages=built.stages, dashboard=built.dashboard, started=t_all)
        print("\n".join(summary_lines(run, checked)), flush=True)
        _say("stopping the cluster and services ...")
    return 1 if checked.problems else 0
