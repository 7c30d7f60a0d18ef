"""``filesystem``: payloads as files ``<root>/<execution id>/<attempt>.json``.

The root is ``RESULT_STORAGE_FILESYSTEM_PATH``, an absolute path every Ray worker
and every reader sees (a shared volume).

Every file operation below the configured root goes through directory file
descriptors with ``O_NOFOLLOW``, so a symbolic link planted under the root can
neither redirect a read nor be swapped in between a check and an open.
A write is atomic: a temporary file in the same directory, fsync, ``os.replace``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterator
from typing import TYPE_CHECKING

from django_ray.results.errors import ResultStorageError, UnsafeResultReference
from django_ray.results.storage import ResultStorage

if TYPE_CHECKING:
    from django_ray.conf import RaySettings

_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY
_NO_LINK = os.O_NOFOLLOW
# ELOOP: the name is a symbolic link; ENOTDIR: a file where a directory belongs.
_REFUSED = frozenset({errno.ELOOP, errno.ENOTDIR, errno.EMLINK})


class FilesystemStorage(ResultStorage):
    """Files under an absolute root directory shared by the Ray workers and the readers."""

    backend = "filesystem"

    def __init__(self, settings: RaySettings) -> None:
        super().__init__(settings)
        if not settings.result_storage_filesystem_path:
            raise ResultStorageError(
                'DJANGO_RAY["RESULT_STORAGE_FILESYSTEM_PATH"] is not set; results stored on '
                "the filesystem cannot be reached."
            )
        self.root = os.path.abspath(settings.result_storage_filesystem_path)

    def location_of(self, key: str) -> str:
        return os.path.join(self.root, *key.split("/"))

    def _write(self, location: str, data: bytes) -> None:
        execution, name = self._parts(location)
        os.makedirs(self.root, exist_ok=True)
        with self._directory(execution, create=True) as (_, directory):
            temporary = f".{name}.{secrets.token_hex(8)}.tmp"
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NO_LINK
            fd = os.open(temporary, flags, 0o666, dir_fd=directory)
            try:
                try:
                    _write_all(fd, data)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(temporary, name, src_dir_fd=directory, dst_dir_fd=directory)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temporary, dir_fd=directory)
                raise
            # The rename is durable only once the directory entry is on disk.
            os.fsync(directory)

    def _read(self, location: str) -> bytes | None:
        execution, name = self._parts(location)
        try:
            with self._directory(execution, create=False) as (_, directory):
                fd = self._open(execution, name, os.O_RDONLY | os.O_NONBLOCK, directory)
        except FileNotFoundError:
            return None
        with os.fdopen(fd, "rb") as file:
            # O_NONBLOCK keeps a FIFO from hanging the open; only a plain file is read.
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                raise _refused(execution, location)
            return file.read()

    def _delete(self, location: str) -> None:
        execution, name = self._parts(location)
        try:
            with self._directory(execution, create=False) as (root, directory):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=directory)
                with contextlib.suppress(OSError):  # still holds another attempt's file
                    os.rmdir(execution, dir_fd=root)
        except FileNotFoundError:
            return

    def _parts(self, location: str) -> tuple[str, str]:
        """``(execution directory, file name)`` of a location made by :meth:`location_of`."""
        execution, name = os.path.relpath(location, self.root).split(os.sep)
        return execution, name

    @contextlib.contextmanager
    def _directory(self, execution: str, *, create: bool) -> Iterator[tuple[int, int]]:
        """File descriptors of the root and of one execution's directory (never a link)."""
        root = os.open(self.root, _DIRECTORY)
        try:
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(execution, 0o777, dir_fd=root)
            directory = self._open(execution, execution, _DIRECTORY, root)
            try:
                yield root, directory
            finally:
                os.close(directory)
        finally:
            os.close(root)

    def _open(self, execution: str, name: str, flags: int, directory: int) -> int:
        """Open ``name`` in ``directory``, refusing a symbolic link."""
        try:
            return os.open(name, flags | _NO_LINK, dir_fd=directory)
        except OSError as exc:
            if exc.errno in _REFUSED:
                path = os.path.join(self.root, execution, "" if name == execution else name)
                raise _refused(execution, path.rstrip(os.sep)) from exc
            raise


def _refused(execution: str, path: str) -> UnsafeResultReference:
    return UnsafeResultReference(
        f"Result reference of execution {execution} is refused: {path} is a symbolic link or "
        "not a regular file; only plain files below RESULT_STORAGE_FILESYSTEM_PATH are read."
    )


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
