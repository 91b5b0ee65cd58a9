"""State of the local server: files and batches, kept on disk under one directory.

Layout under ``root``::

    files/<file id>.json      metadata of a file (a :class:`FileRecord`)
    files/<file id>.data      its bytes, exactly as uploaded
    batches/<batch id>.json   a :class:`BatchRecord`: the served Batch object plus runner state
    batches/<batch id>.out    output lines written so far (becomes the output file)
    batches/<batch id>.err    error lines written so far (becomes the error file)
    tmp/                      uploads in flight, renamed into ``files/`` when complete

Every path is built from an id that matched its strict pattern first (see ``_ids``). One
re-entrant lock guards all state; the HTTP handlers and the runner thread share this object.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from ._ids import is_batch_id, is_file_id, new_batch_id, new_file_id

ACTIVE = frozenset({"validating", "in_progress", "finalizing", "cancelling"})
TERMINAL = frozenset({"failed", "completed", "expired", "cancelled"})
THIRTY_DAYS = 30 * 24 * 3600


@dataclass
class FileRecord:
    """A stored file. ``uploaded`` is False between Netmind's create and its presigned PUT."""

    id: str
    filename: str
    purpose: str
    created_at: int
    bytes: int
    expires_at: int | None
    seq: int
    uploaded: bool = True


@dataclass
class BatchRecord:
    """A batch: ``obj`` is the Batch object as served; the rest is the runner's bookkeeping."""

    obj: dict[str, Any]
    seq: int
    created: float
    deadline: float | None
    seed: int
    shuffle: bool
    output_expires_seconds: int | None = None
    done: int = 0
    out_offset: int = 0
    err_offset: int = 0


class StoreError(Exception):
    """A state change the current state does not allow (the HTTP layer answers 400)."""


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(orjson.dumps(data))
    os.replace(tmp, path)


class Store:
    """Files and batches under ``root``, safe to share between threads.

    Parameters
    ----------
    root:
        The directory holding all state; created if missing. A new store on the same
        directory sees every file and batch an earlier one left there.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.lock = threading.RLock()
        self._files_dir = self.root / "files"
        self._batches_dir = self.root / "batches"
        self.tmp_dir = self.root / "tmp"
        for d in (self._files_dir, self._batches_dir, self.tmp_dir):
            d.mkdir(parents=True, exist_ok=True)
        self._files: dict[str, FileRecord] = {}
        self._batches: dict[str, BatchRecord] = {}
        self._seq = 0
        self._load()

    # -- loading -------------------------------------------------------------------------
    def _load(self) -> None:
        for leftover in self.tmp_dir.iterdir():
            leftover.unlink(missing_ok=True)
        for meta in self._files_dir.glob("*.json"):
            if is_file_id(meta.stem):
                rec = FileRecord(**orjson.loads(meta.read_bytes()))
                self._files[rec.id] = rec
                self._seq = max(self._seq, rec.seq)
        for meta in self._batches_dir.glob("*.json"):
            if is_batch_id(meta.stem):
                brec = BatchRecord(**orjson.loads(meta.read_bytes()))
                self._batches[brec.obj["id"]] = brec
                self._seq = max(self._seq, brec.seq)
                # Lines appended after the last saved state are dropped: they will be redone.
                for suffix, offset in ((".out", brec.out_offset), (".err", brec.err_offset)):
                    part = self._part(brec.obj["id"], suffix)
                    if part.exists() and part.stat().st_size > offset:
                        with part.open("r+b") as fh:
                            fh.truncate(offset)

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    # -- paths ---------------------------------------------------------------------------
    def data_path(self, file_id: str) -> Path:
        """Return the path of a file's bytes; ``file_id`` must be a well-formed id."""
        if not is_file_id(file_id):
            raise ValueError("malformed file id")
        return self._files_dir / f"{file_id}.data"

    def _part(self, batch_id: str, suffix: str) -> Path:
        if not is_batch_id(batch_id):
            raise ValueError("malformed batch id")
        return self._batches_dir / f"{batch_id}{suffix}"

    def new_tmp_path(self, suffix: str = ".upload") -> Path:
        """Return a fresh path under ``tmp/`` for an upload (or a worker's answers) in flight."""
        fd, name = tempfile.mkstemp(dir=self.tmp_dir, suffix=suffix)
        os.close(fd)
        return Path(name)

    # -- files ---------------------------------------------------------------------------
    def add_file(
        self,
        filename: str,
        purpose: str,
        *,
        source: Path | None,
        expires_at: int | None = None,
        created_at: int | None = None,
    ) -> FileRecord:
        """Create a file; its bytes are moved from ``source`` (None: awaiting a presigned PUT)."""
        with self.lock:
            file_id = new_file_id()
            path = self.data_path(file_id)
            if source is None:
                path.write_bytes(b"")
            else:
                os.replace(source, path)
            rec = FileRecord(
                id=file_id,
                filename=filename,
                purpose=purpose,
                created_at=created_at if created_at is not None else int(time.time()),
                bytes=path.stat().st_size,
                expires_at=expires_at,
                seq=self._next_seq(),
                uploaded=source is not None,
            )
            self._files[file_id] = rec
            _write_json(self._files_dir / f"{file_id}.json", asdict(rec))
            return rec

    def put_file_body(self, file_id: str, source: Path) -> FileRecord | None:
        """Replace a file's bytes with ``source`` (a presigned PUT); None if the file is gone."""
        with self.lock:
            rec = self._files.get(file_id)
            if rec is None:
                source.unlink(missing_ok=True)
                return None
            path = self.data_path(file_id)
            os.replace(source, path)
            rec.bytes = path.stat().st_size
            rec.uploaded = True
            _write_json(self._files_dir / f"{file_id}.json", asdict(rec))
            return rec

    def get_file(self, file_id: str) -> FileRecord | None:
        """Return the file with this id, or None (also for a malformed id)."""
        with self.lock:
            return self._files.get(file_id) if is_file_id(file_id) else None

    def list_files(self) -> list[FileRecord]:
        """Return every file, oldest first."""
        with self.lock:
            return sorted(self._files.values(), key=lambda r: r.seq)

    def delete_file(self, file_id: str) -> bool:
        """Delete a file; return whether it existed.

        Its bytes are moved under ``tmp/`` and unlinked by a thread of their own: unlinking a
        large file takes milliseconds, which a client deleting its files one request after
        another would wait for. ``tmp/`` is cleared at start should the server stop first.
        """
        with self.lock:
            if self.get_file(file_id) is None:
                return False
            del self._files[file_id]
            (self._files_dir / f"{file_id}.json").unlink(missing_ok=True)
            doomed = self.new_tmp_path(".deleted")
            with contextlib.suppress(FileNotFoundError):
                os.replace(self.data_path(file_id), doomed)
        unlink = threading.Thread(target=doomed.unlink, kwargs={"missing_ok": True}, daemon=True)
        unlink.start()
        return True

    # -- batches -------------------------------------------------------------------------
    def add_batch(
        self,
        obj: dict[str, Any],
        *,
        deadline: float | None,
        seed: int,
        shuffle: bool,
        output_expires_seconds: int | None,
    ) -> dict[str, Any]:
        """Store a new batch; ``obj`` is the Batch object without its id, which is added."""
        with self.lock:
            batch_id = new_batch_id()
            obj = {"id": batch_id, **obj}
            rec = BatchRecord(
                obj=obj,
                seq=self._next_seq(),
                created=time.time(),
                deadline=deadline,
                seed=seed,
                shuffle=shuffle,
                output_expires_seconds=output_expires_seconds,
            )
            self._batches[batch_id] = rec
            self._save(rec)
            return dict(obj)

    def _save(self, rec: BatchRecord) -> None:
        _write_json(self._part(rec.obj["id"], ".json"), asdict(rec))

    def get_batch(self, batch_id: str) -> dict[str, Any] | None:
        """Return a copy of the Batch object, or None (also for a malformed id)."""
        with self.lock:
            rec = self._batches.get(batch_id) if is_batch_id(batch_id) else None
            return orjson.loads(orjson.dumps(rec.obj)) if rec else None

    def batch_record(self, batch_id: str) -> BatchRecord:
        """Return the live record of a batch (runner use; hold ``lock`` while reading it)."""
        return self._batches[batch_id]

    def list_batches(self) -> list[dict[str, Any]]:
        """Return copies of every Batch object, newest first."""
        with self.lock:
            recs = sorted(self._batches.values(), key=lambda r: r.seq, reverse=True)
            copies: list[dict[str, Any]] = orjson.loads(orjson.dumps([r.obj for r in recs]))
            return copies

    def active_batch_ids(self) -> list[str]:
        """Return the ids of batches the runner still has to move, oldest first."""
        with self.lock:
            recs = sorted(self._batches.values(), key=lambda r: r.seq)
            return [r.obj["id"] for r in recs if r.obj["status"] in ACTIVE]

    def request_cancel(self, batch_id: str) -> dict[str, Any] | None:
        """Move a running batch to ``cancelling``; None if unknown; StoreError if finished."""
        with self.lock:
            rec = self._batches.get(batch_id) if is_batch_id(batch_id) else None
            if rec is None:
                return None
            status = rec.obj["status"]
            if status in ("validating", "in_progress", "finalizing"):
                self.update(batch_id, status="cancelling", cancelling_at=int(time.time()))
            elif status not in ("cancelling", "cancelled"):
                raise StoreError(f"Cannot cancel a batch with status '{status}'.")
            return self.get_batch(batch_id)

    def update(self, batch_id: str, **fields: Any) -> None:
        """Set Batch object fields and persist."""
        with self.lock:
            rec = self._batches[batch_id]
            rec.obj.update(fields)
            self._save(rec)

    def transition(self, batch_id: str, expected: str, **fields: Any) -> bool:
        """Set fields only if the batch is still in status ``expected``; return whether it was."""
        with self.lock:
            if self._batches[batch_id].obj["status"] != expected:
                return False
            self.update(batch_id, **fields)
            return True

    def record_progress(
        self,
        batch_id: str,
        *,
        out: bytes | Path,
        err: bytes | Path,
        done: int,
        completed: int,
        failed: int,
        usage: tuple[int, int],
    ) -> None:
        """Append result lines (bytes, or a file of them under ``tmp/``, which is moved or
        copied and then removed) and advance counts; the saved offsets make it crash-safe."""
        with self.lock:
            rec = self._batches[batch_id]
            rec.out_offset += self._append(self._part(batch_id, ".out"), out, rec.out_offset)
            rec.err_offset += self._append(self._part(batch_id, ".err"), err, rec.err_offset)
            rec.done = done
            counts = rec.obj["request_counts"]
            counts["completed"] += completed
            counts["failed"] += failed
            u = rec.obj["usage"]
            u["input_tokens"] += usage[0]
            u["output_tokens"] += usage[1]
            u["total_tokens"] += usage[0] + usage[1]
            self._save(rec)

    @staticmethod
    def _append(part: Path, lines: bytes | Path, offset: int) -> int:
        """Append ``lines`` to ``part`` (whose saved length is ``offset``); bytes appended."""
        if isinstance(lines, bytes):
            if lines:
                with part.open("ab") as fh:
                    fh.write(lines)
            return len(lines)
        size = lines.stat().st_size
        if size and offset == 0:
            os.replace(lines, part)  # a worker's answers to the whole batch: moved, not copied
        elif size:
            with lines.open("rb") as src, part.open("ab") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        lines.unlink(missing_ok=True)
        return size

    def finish(self, batch_id: str, status: str) -> None:
        """Turn the written lines into result files and end the batch in ``status``."""
        with self.lock:
            rec = self._batches[batch_id]
            if rec.obj["status"] == "cancelling":  # a cancel that raced the end wins
                status = "cancelled"
            now = int(time.time())
            expires = now + (rec.output_expires_seconds or THIRTY_DAYS)
            fields: dict[str, Any] = {"status": status, f"{status}_at": now}
            for suffix, key, kind in (
                (".out", "output_file_id", "output"),
                (".err", "error_file_id", "error"),
            ):
                part = self._part(batch_id, suffix)
                if part.exists() and part.stat().st_size > 0:
                    f = self.add_file(
                        f"{batch_id}_{kind}.jsonl",
                        "batch_output",
                        source=part,
                        expires_at=expires,
                        created_at=now,
                    )
                    fields[key] = f.id
                else:
                    part.unlink(missing_ok=True)
            rec.out_offset = rec.err_offset = 0
            self.update(batch_id, **fields)
