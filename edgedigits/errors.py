"""The one exception type for problems a user can cause and fix, and how to shorten a cause."""


class UserError(Exception):
    """Bad input a user caused (missing file, corrupt data, bad flag).

    Entry points turn it into one line on stderr and exit status 2; anything else is a bug
    and keeps its traceback.
    """


class CommandFailed(Exception):
    """The command ran but could not do its job (every benchmark row failed, an IR did not
    verify): one line on stderr and exit status 1, through the same path as UserError."""


def first_line(error: BaseException) -> str:
    """The line of a library's error message that says what went wrong, for a one-line report.

    OpenVINO messages open with "Exception from src/...cpp:123:" or "Check '...'" before the
    reason, so those lines are skipped; an empty message falls back to the exception's type.
    """
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if not line.startswith(("Exception from", "Check '")):
            return line
    return lines[0] if lines else type(error).__name__
