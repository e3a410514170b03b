"""The package's own exception types.

Every error a user can cause (bad config, missing data, mismatched checkpoint) is raised as a
:class:`RobopolicyError` whose message is one sentence naming the problem and the fix. The command
line entry points print that sentence and exit non-zero; they never show a traceback for these.
"""


class RobopolicyError(Exception):
    """Base class: a problem the user can fix, described in one sentence."""


class ConfigError(RobopolicyError):
    """A configuration value is missing, unknown or inconsistent."""


class DataError(RobopolicyError):
    """A dataset or episode store is missing, corrupt or does not match what is asked of it."""


class CheckpointError(RobopolicyError):
    """A run directory or checkpoint is missing or does not match the config or task."""


class TaskError(RobopolicyError):
    """A task name or task option is unknown."""


class TrainingDivergedError(ConfigError):
    """The training or validation loss became NaN/inf; the run stopped without saving the bad weights."""


class PolicyOutputError(RobopolicyError):
    """A policy produced actions that cannot be executed (NaN or inf)."""
