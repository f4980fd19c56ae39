"""One exception type for every problem a user can fix (bad config, bad file, missing artifact).

The CLI prints these as a single red line and exits non-zero, without a traceback.
"""


class KdrecError(Exception):
    """A user-facing error: the message names the file, row, column or config key at fault."""


class ConfigError(KdrecError):
    pass


class DataError(KdrecError):
    pass


class TrainingError(KdrecError):
    pass
