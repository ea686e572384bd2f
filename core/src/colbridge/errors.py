"""Errors raised by colbridge.

Every error derives from :class:`ColbridgeError`, so ``except ColbridgeError`` catches
everything the library raises on purpose::

    ColbridgeError
    ├── InvalidInputError        bad argument: empty text, duplicate ids, k <= 0 (also a ValueError)
    │   ├── IndexClosedError     a call on an index after close()
    │   └── DocumentTooLongError a document longer than the model's length, long_documents="error"
    ├── DocumentNotFoundError    ids that are not in the index (also a KeyError)
    ├── ModelLoadError           a model that cannot be loaded: unknown id, offline, no model
    ├── IndexMismatchError       an index opened with a model of another identity or dimension
    ├── IndexCorruptError        a folder that is not a colbridge index, or a damaged one
    │   └── IndexNotFoundError   no index at the path (yet): nothing was created
    ├── IndexLockedError         another writer holds the index's write lock
    └── BackendError             a storage backend's call failed (a Qdrant server down or refusing)

Messages say what was found, what was expected, and how to fix it.
"""

from __future__ import annotations


class ColbridgeError(Exception):
    """Base class of every error colbridge raises on purpose."""


class InvalidInputError(ColbridgeError, ValueError):
    """An argument was rejected before anything was changed."""


class IndexClosedError(InvalidInputError):
    """The index was used after :meth:`~colbridge.BaseIndex.close`; open it again."""


class DocumentTooLongError(InvalidInputError):
    """A document is longer than the model's document length and the index (or reranker) was
    set to ``long_documents="error"``; nothing was written. The message names the document and
    its token count."""


class DocumentNotFoundError(ColbridgeError, KeyError):
    """Some of the requested ids are not in the index."""

    def __init__(self, missing: list[str]) -> None:
        self.missing = list(missing)
        shown = ", ".join(repr(i) for i in self.missing[:5])
        more = f" and {len(self.missing) - 5} more" if len(self.missing) > 5 else ""
        super().__init__(f"{len(self.missing)} id(s) not in the index: {shown}{more}")

    def __str__(self) -> str:  # KeyError would otherwise print the repr of the message
        return str(self.args[0])


class ModelLoadError(ColbridgeError):
    """A ColBERT model could not be loaded."""


class IndexMismatchError(ColbridgeError):
    """The index was built with a different model than the one given."""


class IndexCorruptError(ColbridgeError):
    """The folder is not a colbridge index, or its files are damaged."""


class IndexNotFoundError(IndexCorruptError):
    """No index exists at the path: a read (or ``create=False``) found a missing or empty folder.

    Nothing is created by the call that raises it; the first ``add`` creates the index.
    """


class IndexLockedError(ColbridgeError):
    """Another writer holds the index's write lock."""


class BackendError(ColbridgeError):
    """A call to a storage backend (such as a Qdrant server) failed; the message names the
    call and the collection, and ``__cause__`` holds the client's own error."""
