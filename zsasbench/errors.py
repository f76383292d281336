"""Errors the CLI turns into one clear line (no traceback)."""


class UserError(Exception):
    """Bad input from the user: names the file or value and the rule it broke."""


class DataError(UserError):
    """A dataset file or folder breaks a layout or pairing rule."""


class MissingWeightsError(UserError):
    """Model weights a method needs are not present on this machine."""
