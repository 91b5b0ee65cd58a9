"""Owner-only folders and files under ``NETMIND_FRAMES_HOME``.

The home holds the journal (prompt templates, input paths, file and batch ids), the spooled
request shards (every row's prompt), the results of running jobs and doctor records: on a
shared machine nobody else may read them. Folders are created 0700 and files 0600 whatever
the process's umask: the umask masks the mode given to ``mkdir``/``open``, so the mode is set
again explicitly after creating. The umask itself is never changed: it belongs to the user's
process (and to its other threads). An existing home that others can open gets one warning
per process, naming the fix; this module never changes the mode of what it did not create.
"""

from __future__ import annotations

import logging
import os
import shlex
import stat
import threading
from pathlib import Path

#: Folders under the home: the owner reads, writes and enters them; nobody else.
DIR_MODE = 0o700
#: Files under the home: the owner reads and writes them; nobody else.
FILE_MODE = 0o600

log = logging.getLogger("netmind_frames")

_warned: set[str] = set()
_warned_lock = threading.Lock()


def private_home(home: Path) -> Path:
    """Create ``home`` owner-only (0700) if missing; warn once if an existing one is open to
    others (group or world bits set). Missing parents are created with the usual modes."""
    if not private_dir(home):
        _warn_if_open(home)
    return home


def private_dir(path: Path) -> bool:
    """Create the folder ``path`` with mode 0700 (parents as usual); True if this call made it.

    An existing folder is left as it is.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=DIR_MODE)
    except FileExistsError:
        return False
    os.chmod(path, DIR_MODE)  # mkdir's mode went through the umask
    return True


def private_file(path: Path) -> Path:
    """Make sure the file ``path`` exists, created with mode 0600 if missing.

    For writers that open a path themselves (SQLite, pyarrow, the openai client's
    ``stream_to_file``): they truncate the file and keep its mode. An existing file is left
    as it is.
    """
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    except FileExistsError:
        return path
    os.chmod(path, FILE_MODE)  # open's mode went through the umask
    return path


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (created or truncated), the file's mode set to 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "wb") as out:
        os.chmod(path, FILE_MODE)  # open's mode went through the umask (os.fchmod: POSIX only)
        out.write(data)


def _warn_if_open(home: Path) -> None:
    try:
        mode = stat.S_IMODE(home.stat().st_mode)
    except OSError:
        return  # not there or not ours to look at: the caller's own error follows
    if not mode & 0o077:
        return
    key = str(home.resolve())
    with _warned_lock:
        if key in _warned:
            return
        _warned.add(key)
    log.warning(
        "%s (NETMIND_FRAMES_HOME) has mode %s: other users of this machine can open it, and it "
        "holds prompts, input paths and batch ids. Make it private with: chmod -R go-rwx %s",
        home,
        oct(mode),
        shlex.quote(str(home)),
    )
