"""Errors a user can fix (missing input, nothing selected, ...): operators report them as they are."""


class UserError(Exception):
    pass
