"""TEMPORARY (replaced by the rules branch)."""


class IndadError(Exception):
    """Base."""


class NotFittedError(IndadError, RuntimeError):
    """predict or evaluate called before fit."""


class NotCalibratedError(IndadError, RuntimeError):
    """A decision asked of a model without thresholds."""


class ModelFileError(IndadError, ValueError):
    """TEMP."""
