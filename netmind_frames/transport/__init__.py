"""Stage 4, transport: where the API is and how bytes reach it.

``_config`` resolves the settings (argument > ``NETMIND_*`` env var > default) and the
provider; ``_connection`` pools the openai client and the file transport; ``_files`` uploads
request files and downloads result files (Netmind's presigned File API, OpenAI's multipart).
Sits above ``server`` only because ``local=True`` starts the embedded local server.
"""
