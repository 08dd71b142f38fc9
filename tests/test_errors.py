"""One exception hierarchy: every error indad raises on purpose is an IndadError, with its builtin base kept."""

import pytest

from indad import errors
from indad.backbones import BackboneError, WeightsNotFoundError
from indad.config import ConfigError
from indad.data import DatasetLayoutError, DatasetNotFoundError, DownloadError, ImageReadError
from indad.export import ModelFileError
from indad.methods import NotCalibratedError, NotFittedError

USER_ERRORS = {
    ConfigError: ValueError,
    BackboneError: ValueError,
    ImageReadError: ValueError,
    DatasetLayoutError: ValueError,
    DatasetNotFoundError: ValueError,
    ModelFileError: ValueError,
    DownloadError: RuntimeError,
    WeightsNotFoundError: RuntimeError,
}
STATE_ERRORS = {NotFittedError: RuntimeError, NotCalibratedError: RuntimeError}


@pytest.mark.parametrize("cls", list(USER_ERRORS))
def test_every_user_error_is_an_indad_error_and_keeps_its_builtin_base(cls):
    assert issubclass(cls, errors.IndadError) and issubclass(cls, USER_ERRORS[cls])
    assert issubclass(cls, (errors.InputError, errors.ResourceError)) and not issubclass(cls, errors.StateError)


@pytest.mark.parametrize("cls", list(STATE_ERRORS))
def test_state_errors_are_indad_errors_apart_from_user_errors(cls):
    assert issubclass(cls, errors.StateError) and issubclass(cls, STATE_ERRORS[cls])
    assert not issubclass(cls, (errors.InputError, errors.ResourceError))


@pytest.mark.parametrize("cls", [*USER_ERRORS, *STATE_ERRORS])
def test_each_class_is_defined_once_in_errors_and_imported_where_it_was(cls):
    assert getattr(errors, cls.__name__) is cls
