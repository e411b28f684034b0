"""The one exception type for user mistakes: the CLI prints its message as one line and exits 2."""


class UserError(Exception):
    """Bad input (config value, file, dataset): the message names the problem and the fix."""
