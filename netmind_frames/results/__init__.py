"""Stage 2, results: output and error lines become result columns joined onto the rows.

``_results`` parses both result files into Arrow and joins them back by row position;
``_schema``/``_structured`` turn structured answers into typed columns; ``_embeddings`` does
the same for vectors; ``_answer_lines`` is the output-line format, shared with the local
server. Imports only ``build`` below it.
"""
