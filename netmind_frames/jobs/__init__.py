"""Stage 5, jobs: shards become paid batches exactly once, are waited on, and come back.

``_submit`` (journal, then lookups on the server, then create), ``_lookup`` (a batch found by
its metadata or by its input file's name, or said to be undeterminable) and ``_journal`` keep
the never-pay-twice promise; ``_rounds`` polls and retries; ``_job`` is ``BatchJob``;
``_attach``, ``_cancel`` and ``_status`` act on a job by its id; ``_sync`` is sync mode;
``_output`` writes a job's result to Parquet; ``_options`` and ``_checks`` are a call's options
and their checks. Imports build, results and transport, never the front ends.
"""
