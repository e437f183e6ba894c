"""User-facing errors: one line that names the file and the problem."""

from __future__ import annotations


class IpassrError(Exception):
    """A problem with the user's input (file, argument, checkpoint).

    The CLI prints ``ipassr: error: <message>`` and exits with status 2.
    """


class ImageReadError(IpassrError):
    """An input image is missing, unreadable or of an unsupported kind."""


class CheckpointError(IpassrError):
    """A checkpoint is unreadable, unsafe, or does not match the network."""
