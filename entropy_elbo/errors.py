"""The one exception family for user errors: the CLI turns it into a one-line message and exit 1."""


class EntropyElboError(Exception):
    """A user error: bad file, bad key, bad shape or bad option. The message says what to do."""


class DataError(EntropyElboError):
    """A data file that cannot be read or holds values we cannot use."""


class CheckpointError(EntropyElboError):
    """A checkpoint that cannot be read, or whose model we cannot work out."""


class ModelError(EntropyElboError):
    """A model that does not meet the protocol, or a request it cannot answer."""
