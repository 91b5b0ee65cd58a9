"""Stage 1, build: a table becomes request lines.

Templates, messages and per-row parameters become JSONL request lines with generated
``custom_id``s (``_requests``, ``_content``, ``_lines``, ``_escape``, ``_rowparams``,
``_custom_ids``), cut into shards within the provider's limits and spooled to disk with their
fingerprints (``_spool``). ``_source`` reads the input (a frame or a Parquet file) window by
window. Imports nothing above ``_errors`` and ``_timing``.
"""
