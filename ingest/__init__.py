"""The ingest (installed as ``tailor.ingest``): Kafka records → raw objects, durable first.

A fetch is classified (:mod:`.classify`), batched per shard (:mod:`.batcher`, pure),
written object-then-index (:mod:`.writer`, retried by :mod:`.write_retry`), and only
then are offsets and watermarks committed (:mod:`.commits`); :mod:`.consumer` is the
loop and :mod:`.service` the process.
"""
