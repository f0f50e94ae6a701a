"""Tailor's byte and key formats, shared by ingest, build and the tools.

- :mod:`~tailor.format.payload`: the Kafka payload codec and the reference
  validation (docs/contracts.md, "Point payload");
- :mod:`~tailor.format.validate_batch`: the same rules over a whole fetch in
  one numba pass, with :mod:`~tailor.format.zstdframe`, a zstd frame walker;
- :mod:`~tailor.format.framing`: frames of raw objects (a CRC-checked header
  in front of each payload's zstd bytes);
- :mod:`~tailor.format.layout`: where things live in the raw and output
  stores, and the window arithmetic;
- :mod:`~tailor.format.records`: the JSON records beside the data (index
  records, watermarks, quarantine entries, manifests).

Pure: no I/O.
"""
