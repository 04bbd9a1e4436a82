"""Errors that stop a training run with a clear message (no traceback)."""

from __future__ import annotations


class TrainingError(Exception):
    """The run cannot start or continue; the message says why and what is left on disk."""


class TrainingStopped(TrainingError):
    """The run stopped because it was asked to (Ctrl-C, SIGTERM): not a failure.

    The command line exits with 130 (the shell's code for an interrupted command) and prints the
    message, which names the checkpoint and the exact command that resumes the run.

    Attributes:
        step: The step the checkpoint holds.
    """

    exit_code = 130

    def __init__(self, message: str, *, step: int):
        super().__init__(message)
        self.step = step
