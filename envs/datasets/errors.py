"""The one exception type for unusable datasets and dataset requests."""

from __future__ import annotations


class DatasetError(ValueError):
    """A dataset file, or a request for one, cannot be used.

    The message is a single line that names the file (or dataset id / task) and the problem: the
    key, the shapes or the offending value. The command-line entry prints `error: <message>` and
    exits with status 2, so the message must make sense on its own.
    """

    def __init__(self, message: str) -> None:
        # Multi-line text (for example an h5py reason) would break the one-line contract.
        super().__init__(" ".join(str(message).split()))
