"""Errors whose cause is the user's input: the CLI prints them without a traceback."""


class TcmrError(Exception):
    """Base class for errors the user can act on (a file, a setting, a field)."""


class MissingFileError(TcmrError, FileNotFoundError):
    """A required file is absent; the message names it, the setting and its origin."""


class FormatError(TcmrError, ValueError):
    """A file exists but its content does not have the expected layout."""


class StoreError(TcmrError):
    """A store is missing, incomplete, of another schema version, or indexed out of range."""
