"""The build (installed as ``tailor.compute``): raw objects → published S files, on Dask.

Stages: plan → read → decode → (exchange/route) → merge → encode → publish, with the
task graph in :mod:`.graph`, memory sizing in :mod:`.budget` and ``tailor build`` in
:mod:`.build_cli`.  What runs beside the build (readiness, status, gc, diff, read,
shard planning) is :mod:`tailor.ops`.
"""
