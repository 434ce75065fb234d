"""Errors that reach the user as one clear line (the CLI prints them without a traceback)."""


class FerkitError(Exception):
    """Base class: the message is what the user sees."""


class DataError(FerkitError):
    """A data file or folder is missing or malformed; the message names the file and row/path."""


class ImageError(FerkitError):
    """An image cannot be decoded or is unacceptable (corrupt, empty, too large)."""
