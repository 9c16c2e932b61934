"""Writes that survive a crash or a full disk whole or not at all: one home for them."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_directory(directory: Path) -> None:
    """Make a directory's entries (a new, renamed or removed file) survive a power loss."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def replace_atomically(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Replace the file with `data` in one step: readers see the old file or the new one, never
    a torn one, and a failed write (a full disk) leaves neither a half file nor its temporary.
    `durable`: fsync'd, file and directory entry, before returning."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        temporary.write_bytes(data)
        if durable:
            descriptor = os.open(temporary, os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    if durable:
        fsync_directory(path.parent)
