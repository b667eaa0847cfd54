"""Files only the daemon's user may read: the store, the spool and the recording hold
alerts, commands and approvals. Files are 0600 and folders the daemon creates 0700,
whatever the umask; existing files are tightened when opened.

SQLite creates a database's -wal and -shm files with the database file's mode, so a
store made 0600 before SQLite first opens it keeps its companions private too.
"""

from __future__ import annotations

import os
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700
# The umask `remediator serve` runs under: anything else it creates is private too.
UMASK = 0o077


def private_dir(path: Path) -> None:
    """Create `path` and its missing parents with mode 0700; existing folders stay as they are."""
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue
        os.chmod(folder, DIR_MODE)  # mkdir's mode is masked by the umask


def private_file(path: Path) -> None:
    """Create `path` empty with mode 0600 if it is missing; make an existing one 0600.

    An existing file is changed by name, never opened: closing a descriptor would drop
    the POSIX locks SQLite holds on it in this process.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
    except FileExistsError:
        os.chmod(path, FILE_MODE)
        return
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)


def tighten(*paths: Path) -> None:
    """Make these files 0600 where they exist (SQLite's -wal and -shm of an older run)."""
    for path in paths:
        try:
            os.chmod(path, FILE_MODE)
        except FileNotFoundError:
            continue


def sqlite_files(db: Path) -> tuple[Path, Path]:
    """The -wal and -shm files SQLite keeps beside `db`."""
    return db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")
