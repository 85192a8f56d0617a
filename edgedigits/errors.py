"""The one exception type for problems a user can cause and fix."""


class UserError(Exception):
    """Bad input a user caused (missing file, corrupt data, bad flag).

    Entry points turn it into one line on stderr and exit status 2; anything else is a bug
    and keeps its traceback.
    """
