"""One exception type for every error a user can cause.

Front ends catch :class:`UserError`, print its message once and exit with status 1; anything else
is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input from the user: a file, a column, a parameter, a value, a model file."""
