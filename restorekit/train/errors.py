"""Errors that stop a training run with a clear message (no traceback)."""


class TrainingError(Exception):
    """The run cannot start or continue; the message says why and what is left on disk."""
