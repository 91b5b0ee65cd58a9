"""Spark DataFrames through the Batch API: ``netmind_frames.spark.batch_complete(sdf, ...)``.

Needs the spark extra (from a clone, ``pip install -e '.[spark]'``); ``import netmind_frames``
never imports this module or PySpark. Each function takes a ``pyspark.sql.DataFrame`` and the
arguments of its pandas counterpart; the work per partition runs on the executors, the wait on
the driver (see :mod:`netmind_frames.frames._spark`).
"""

from __future__ import annotations

from .frames._spark import SparkJob, batch_complete, batch_embed, submit

__all__ = ["SparkJob", "batch_complete", "batch_embed", "submit"]
