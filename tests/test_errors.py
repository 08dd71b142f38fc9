"""One exception hierarchy: every error indad raises on purpose is an IndadError, with its builtin base kept."""

import pytest

from indad import errors
from indad.backbones import BackboneError, WeightsNotFoundError
from indad.config import ConfigError
from indad.data import DatasetLayoutError, DownloadError, ImageReadError

USER_ERRORS = {ConfigError: ValueError, BackboneError: ValueError, ImageReadError: ValueError,
               DatasetLayoutError: ValueError, errors.DatasetNotFoundError: ValueError, errors.ModelFileError: ValueError,
               DownloadError: RuntimeError, WeightsNotFoundError: RuntimeError}
STATE_ERRORS = {errors.NotFittedError: RuntimeError, errors.NotCalibratedError: RuntimeError}


@pytest.mark.parametrize("cls", list(USER_ERRORS))
def test_every_user_error_is_an_indad_error_and_keeps_its_builtin_base(cls):
    assert issubclass(cls, errors.IndadError) and issubclass(cls, USER_ERRORS[cls])
    assert issubclass(cls, (errors.InputError, errors.ResourceError)) and not issubclass(cls, errors.StateError)


@pytest.mark.parametrize("cls", list(STATE_ERRORS))
def test_state_errors_are_indad_errors_apart_from_user_errors(cls):
    assert issubclass(cls, errors.StateError) and issubclass(cls, STATE_ERRORS[cls])
    assert not issubclass(cls, (errors.InputError, errors.ResourceError))


def test_the_modules_raise_the_classes_defined_in_errors():
    assert DatasetLayoutError is errors.DatasetLayoutError and BackboneError is errors.BackboneError
    assert ImageReadError.__module__ == DownloadError.__module__ == ConfigError.__module__ == "indad.errors"
