"""What can go wrong with a stored result, one class per case a caller may want to tell apart.

Every message names the execution and, where there is one, the location, so an
operator can find the object without reading code.
"""

from __future__ import annotations


class ResultStorageError(Exception):
    """Base of every result storage error."""


class ResultWriteFailed(ResultStorageError):
    """An oversized result could not be stored; the attempt that produced it failed."""


class ResultUnavailable(ResultStorageError):
    """A stored result cannot be given back; never replaced by a wrong value."""


class ResultDigestOnly(ResultUnavailable):
    """The result was too large to keep inline and the ``digest`` backend kept only its hash."""


class ResultMissing(ResultUnavailable):
    """Nothing is stored where the pointer says the payload is."""


class ResultCorrupted(ResultUnavailable):
    """The stored payload's size or sha256 differs from the pointer's."""


class UnsafeResultReference(ResultUnavailable):
    """A pointer that is malformed or points outside this execution's own key; refused unread."""
