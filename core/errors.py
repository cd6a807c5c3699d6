"""One exception family for everything the tool reports to a user.

Every error a caller should handle derives from ``CxrError``; its message is one sentence
that says what is wrong and names the fix. The command-line tools turn any ``CxrError``
into one line on stderr and exit status 2 (scripts/_cli.py); the pages catch this family,
not ``Exception``. Subclasses keep a built-in base (ValueError, RuntimeError) where older
callers caught that. Built-in exceptions stay for programming errors only (code passing an
array of the wrong shape): those are bugs to fix, not messages for a user.
"""
from __future__ import annotations


class CxrError(Exception):
    """Base of every error this tool reports to a user as one line."""


# Most errors live next to the code that raises them (WeightsError in core.model.description,
# ImageDecodeError in core.data.images, TextError in core.data.text_clean, ...); the ones below are
# raised from several modules, so they live here.

class OptionError(CxrError, ValueError):
    """A setting or argument has a value the tool does not know; the message lists the ones it does."""


class DataError(CxrError, ValueError):
    """The training or evaluation data cannot be used as given (too few images, a bad split file)."""


class RunStateError(CxrError, RuntimeError):
    """A run folder's saved training state does not fit this model; start a new run folder."""


# -- the prediction log (core.store) ------------------------------------------------------------

class StoreError(CxrError, RuntimeError):
    """The prediction log cannot be read or written."""


class StoreReadOnlyError(StoreError):
    """The database file (or its folder) cannot be written."""


class StoreFullError(StoreError):
    """The disk holding the database is full."""


class PredictionNotFound(StoreError):
    """No prediction has the given id."""


class LogEntryError(CxrError, ValueError):
    """A prediction or verdict handed to the log has a value the log cannot store."""


class BackboneUnavailable(CxrError, RuntimeError):
    """A pretrained backbone cannot be loaded (usually: no network)."""
