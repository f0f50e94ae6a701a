"""Operations over both stores (installed as ``tailor.ops``): what runs beside the build.

Readiness and staleness of chunks (:mod:`.readiness`, pure), the per-chunk lease
(:mod:`.lease`) and the ``tailor build --ready`` runner (:mod:`.ready`); the state
they read (:mod:`.state`); ``tailor status``, ``tailor diff``, ``tailor gc``,
``tailor read`` (:mod:`.sfile_reader`); shard volume, planning and resharding
(:mod:`.volume`, :mod:`.shardplan`, :mod:`.balance`, :mod:`.reshard`).  The build
stages themselves are :mod:`tailor.compute`.
"""
