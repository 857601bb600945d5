"""One base class for the errors a user can cause, and the command line's exit codes.

A :class:`LensauditError` means bad input, a bad config or an unusable environment: the
message names the object and the problem, and the command line prints it as one line and
exits with :data:`EXIT_USER_ERROR`. Every other exception is a bug and keeps its traceback.
Each stage's own error classes (``ConfigError``, ``ManifestError``, ``StoreError``, ...)
derive from it; most also derive from the built-in class they replaced (``ValueError``,
``RuntimeError``), so ``except ValueError`` in user code keeps working.
"""

from __future__ import annotations

#: The command succeeded.
EXIT_OK = 0
#: The command ran, but a verification or check it performs failed (e.g. ``catalog verify``).
EXIT_FAILED = 1
#: A user error: bad input, config or environment (a :class:`LensauditError`); nothing was done.
EXIT_USER_ERROR = 2
#: Partial success: some items failed and were recorded (e.g. cutouts that could not be fetched).
EXIT_PARTIAL = 3
#: Ctrl-C (SIGINT) and SIGTERM: what was buffered is committed first.
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143

EXIT_CODES_HELP = (f"exit codes: {EXIT_OK} ok, {EXIT_FAILED} a verification or check failed, "
                   f"{EXIT_USER_ERROR} user error (bad input, config or environment), "
                   f"{EXIT_PARTIAL} partial success (some items failed; see the report), {EXIT_INTERRUPTED} interrupted (Ctrl-C), "
                   f"{EXIT_TERMINATED} terminated (SIGTERM); work committed before a signal is kept")


class LensauditError(Exception):
    """Base class of user-facing errors (bad input, config or environment)."""


class InputError(LensauditError, ValueError):
    """An argument or input value is invalid (the message names which and why)."""


class RunExistsError(LensauditError, FileExistsError):
    """An output folder already holds a run that would be overwritten (use ``--force`` or ``--resume``)."""


class BusyError(LensauditError, RuntimeError):
    """Another process holds the lock of a store or run folder."""


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived (``timeout``, a batch scheduler, a container stop): handled like Ctrl-C, so
    whatever a stage buffered is committed before it stops; the command line exits 143."""
