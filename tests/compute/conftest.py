"""One Dask LocalCluster (2 processes on loopback, as `tailor build` starts it) for the tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from distributed import Client

from tailor.compute.build import local_cluster


@pytest.fixture(scope="session")
def client() -> Iterator[Client]:
    with local_cluster(2) as cluster, Client(cluster) as c:
        yield c
