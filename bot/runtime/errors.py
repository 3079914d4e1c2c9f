"""The one error the runtime shows its user."""


class CliError(Exception):
    """A problem to show the user as one line, exit 1."""
