"""Errors that reach users: each carries a message meant to be read, not a stack trace."""


class LtrrError(Exception):
    """Base of every error ltrr-os raises on purpose; the CLI prints its message and exits 2."""


class ConfigError(LtrrError):
    """The configuration (environment, config file or arguments) is invalid."""


class QueryError(LtrrError):
    """A search request is outside the limits (too long, too many candidates, bad values)."""


class OpenSearchUnavailableError(LtrrError):
    """OpenSearch could not be reached or answered with an error we cannot work around."""
