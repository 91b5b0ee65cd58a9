"""Stage 6, front ends: the functional API (``_api``) and the table front ends over it.

``_api`` holds ``batch_complete``, ``submit``, ``batch_embed``, ``to_jsonl`` and ``attach``;
``_accessor`` registers ``df.netmind`` on pandas as a thin shell over them. Polars, Arrow,
Dask and Spark front ends go here too. The CLI (``netmind_frames.cli``) sits above.
"""
