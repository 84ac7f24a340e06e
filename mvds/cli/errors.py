"""The one exception type the CLI turns into a one-line error message."""


class CliError(Exception):
    """A user-facing error: printed as ``mvds: <message>``, exit code non-zero."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code
