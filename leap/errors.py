"""The one exception type for bad input that users can fix (CLI: exit code 2, no traceback)."""


class LeapError(ValueError):
    """A problem with the user's input, config or files, with a message that says the fix."""
