"""Fixtures that start real services on free loopback ports.

- ``broker``: one Tansu broker per session (tests use their own topics).
- ``s3``: one moto S3 server per session; ``bucket`` gives each test its own
  bucket and ``raw_store``/``out_store`` StoreConfigs inside it.
- ``topics``: fresh, unique topic names (created with 4 partitions each).

Every test that starts a service (a broker, an S3 server, a Dask cluster, a
``tailor`` subprocess) carries the ``services`` marker: the fixtures below
and in ``tests/*/conftest.py`` add it (:func:`pytest_collection_modifyitems`),
and a test that starts one itself says ``@pytest.mark.services``.
``pytest -m "not services"`` is the fast edit loop (``make test-fast``).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# moto accepts any credentials; botocore must find some.  Tests only.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.pop("AWS_PROFILE", None)

from tailor.config import StoreConfig
from tailor.storage import Store
from tailor.testing import services

#: Fixtures that start a service, directly or through another fixture: a test
#: using any of them is marked ``services``.
SERVICE_FIXTURES = frozenset({
    "broker", "topics",  # Tansu (tests/conftest.py)
    "s3", "bucket", "raw_store", "out_store",  # moto S3 server (tests/conftest.py)
    "dask_client",  # in-process LocalCluster (tests/conftest.py)
    "client",  # LocalCluster of 2 workers (the client fixture below)
    "procs",  # `tailor ingest` subprocesses (tests/ingest/conftest.py)
})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark ``services`` every test that uses a service fixture, or ``store`` on S3."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        callspec = getattr(item, "callspec", None)
        on_s3 = callspec is not None and callspec.params.get("store") == "s3"
        if names & SERVICE_FIXTURES or on_s3:
            item.add_marker(pytest.mark.services)


@pytest.fixture(scope="session")
def client() -> Iterator[Any]:
    """One Dask LocalCluster (2 workers on loopback, as `tailor build` starts it) per
    test process, for the build and ops tests (imported here only when used)."""
    from distributed import Client

    from tailor.compute.build import local_cluster

    with local_cluster(2) as cluster, Client(cluster) as c:
        yield c


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.Broker]:
    log = tmp_path_factory.mktemp("tansu") / "tansu.log"
    with services.broker(str(log)) as b:
        yield b


@pytest.fixture()
def topics(broker: services.Broker) -> list[str]:
    """Two fresh topics of 4 partitions each."""
    tag = uuid.uuid4().hex[:8]
    names = [f"points-{tag}-0", f"points-{tag}-1"]
    asyncio.run(services.create_topics(broker.bootstrap, names, 4))
    return names


@pytest.fixture(scope="session")
def s3() -> Iterator[services.S3Server]:
    server = services.start_s3()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture()
def bucket(s3: services.S3Server) -> str:
    name = f"tailor-{uuid.uuid4().hex[:12]}"
    services.create_bucket(s3.endpoint_url, name)
    return name


@pytest.fixture()
def raw_store(s3: services.S3Server, bucket: str) -> StoreConfig:
    return StoreConfig(url=f"s3://{bucket}/raw", s3_endpoint_url=s3.endpoint_url)


@pytest.fixture()
def out_store(s3: services.S3Server, bucket: str) -> StoreConfig:
    return StoreConfig(url=f"s3://{bucket}/out", s3_endpoint_url=s3.endpoint_url)


@pytest.fixture(scope="module")
def dask_client() -> Iterator[Any]:
    """A small in-process Dask cluster (one worker, two threads) shared by a module."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, protocol="tcp",
                      host="127.0.0.1", dashboard_address="127.0.0.1:0") as cluster, \
            Client(cluster) as client:
        yield client


@pytest.fixture(params=["dir", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """One Store per test, on a local directory and on moto S3 (its own bucket)."""
    if request.param == "dir":
        return Store(StoreConfig(url=str(tmp_path / "store")))
    cfg: StoreConfig = request.getfixturevalue("out_store")
    return Store(cfg)
