"""Test sources and sinks shipped with Tailor: a synthetic intake stream, its
oracle, a Kafka producer for it and launchers of the services it runs against.

- :mod:`tailor.testing.stream`: :func:`~tailor.testing.stream.generate`, a
  realistic stream reproducible by seed (with :mod:`~tailor.testing.series`,
  the series model, and :mod:`~tailor.testing.invalid`, invalid records of
  every reason);
- :mod:`tailor.testing.oracle`: the expected S-file rows of a stream,
  computed without Tailor's build;
- :mod:`tailor.testing.produce`: ``tailor produce``, sending a stream to Kafka;
- :mod:`tailor.testing.services`: a Tansu broker and a moto S3 server as
  subprocesses on free loopback ports.

Nothing here is used by ``tailor ingest`` or ``tailor build``.
"""
