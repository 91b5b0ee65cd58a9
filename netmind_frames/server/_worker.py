"""Entry point of a worker process (``python -m netmind_frames.server._worker``); see ``_pool``."""

from netmind_frames.server._pool import serve

if __name__ == "__main__":
    serve()
