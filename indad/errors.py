"""The errors indad raises on purpose, under one base class :class:`IndadError`.

Each keeps a builtin base, so ``except ValueError`` / ``except RuntimeError``
still catch what they caught before::

    IndadError
    ├── InputError (ValueError)           something given to indad that it cannot use
    │   ├── ConfigError                   a configuration file or value
    │   ├── BackboneError                 a backbone name, stage or device
    │   ├── ImageReadError                an image or mask file
    │   ├── DatasetLayoutError            a dataset folder or list of images
    │   │   └── DatasetNotFoundError      a dataset that is not there (nor downloaded)
    │   └── ModelFileError                a model file
    ├── ResourceError (RuntimeError)      something indad fetches that cannot be had
    │   ├── DownloadError                 a dataset download or extraction
    │   └── WeightsNotFoundError          pretrained backbone weights
    └── StateError (RuntimeError)         a model asked for what it does not have yet
        ├── NotFittedError
        └── NotCalibratedError

:class:`InputError` and :class:`ResourceError` are the user's to fix (the CLI
shows their message alone); a :class:`StateError` is a call made too early.
"""

from __future__ import annotations


class IndadError(Exception):
    """Base class of every error indad raises on purpose."""


class InputError(IndadError, ValueError):
    """A value, file or folder given to indad that it cannot use; the message names it."""


class ResourceError(IndadError, RuntimeError):
    """Something indad has to fetch for the user (a dataset, pretrained weights) that cannot be had."""


class StateError(IndadError, RuntimeError):
    """A model asked for something it does not have yet."""


class ConfigError(InputError):
    """A configuration file or value that cannot be used."""


class BackboneError(InputError):
    """A backbone name, stage or device that cannot be used."""


class ImageReadError(InputError):
    """An image or mask file that is missing, unreadable or unusable."""


class DatasetLayoutError(InputError):
    """A dataset folder that does not follow the expected layout, or a set of images that is empty."""


class DatasetNotFoundError(DatasetLayoutError):
    """A dataset, named or given as a folder, that is not there (and is not to be downloaded)."""


class ModelFileError(InputError):
    """A model file that cannot be read, or does not match the backbone weights at hand."""


class DownloadError(ResourceError):
    """A dataset download or extraction that failed."""


class WeightsNotFoundError(ResourceError):
    """No source could provide pretrained weights for a backbone."""


class NotFittedError(StateError):
    """predict or evaluate called before fit."""


class NotCalibratedError(StateError):
    """A decision asked of a model without thresholds."""
