"""Errors a user can fix. Each message is one line that names what is wrong and where."""


class Gpt2labError(ValueError):
    """Base class: the command line prints these as one line, without a traceback."""


class CheckpointError(Gpt2labError):
    """A checkpoint folder or hub id that cannot be loaded as a GPT-2."""
