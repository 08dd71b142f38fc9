"""The method protocol shared by every method: explicit parameters, lazy construction, no global reseeding."""

import inspect
import random

import numpy as np
import pytest
import torch

from indad.errors import BackboneError
from indad.methods import METHODS, AnomalyModel, ModelState

SHARED = (
    "backbone_name",
    "strides",
    "image_size",
    "crop_size",
    "blur_sigma",
    "batch_size",
    "device",
    "fp16",
    "weights",
    "num_workers",
    "seed",
    "progress",
)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_parameter_is_explicit_in_the_signature(name):
    params = inspect.signature(METHODS[name]).parameters
    assert not any(p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) for p in params.values())
    assert set(SHARED) <= set(params) and set(params) == set(METHODS[name].param_defaults())


@pytest.mark.parametrize("name", sorted(METHODS))
def test_constructing_builds_no_backbone(name, monkeypatch):
    import indad.methods.base as base

    def refuse(*args, **kwargs):
        raise AssertionError("the constructor built the backbone")

    monkeypatch.setattr(base, "Backbone", refuse)
    model = METHODS[name](
        image_size=64, **({"members": [{"method": "padim", "image_size": 64}]} if name == "ensemble" else {})
    )
    assert model._backbone is None and model.preprocess.mean == (0.5, 0.5, 0.5)
    with pytest.raises(AssertionError, match="built the backbone"):
        model.backbone  # noqa: B018 - first use builds it


def test_unknown_backbone_is_named_at_construction():
    with pytest.raises(BackboneError, match="unknown backbone 'no_such_net'"):
        METHODS["patchcore"]("no_such_net")


def test_fit_leaves_the_global_random_generators_alone(tiny_model, tiny_root):
    def draws() -> tuple:
        return random.random(), float(np.random.rand()), float(torch.rand(1))

    random.seed(5), np.random.seed(5), torch.manual_seed(5)
    expected = draws()
    random.seed(5), np.random.seed(5), torch.manual_seed(5)
    type(tiny_model)(image_size=64, batch_size=4, progress=False, seed=3).fit(tiny_root, holdout=0.25)
    assert draws() == expected


def test_state_round_trip_through_the_protocol(tiny_model, tiny_root):
    state = tiny_model.to_state()
    assert isinstance(state, ModelState) and all(isinstance(t, torch.Tensor) for t in state.tensors.values())
    twin = type(tiny_model)(**tiny_model.hparams())
    twin.from_state(ModelState(dict(state.tensors), dict(state.meta)))
    twin.rebuild()
    np.testing.assert_array_equal(twin.predict(tiny_root).scores, tiny_model.predict(tiny_root).scores)


def test_one_shard_fit_is_partial_then_merge(tiny_model, tiny_root):
    model: AnomalyModel = type(tiny_model)(**tiny_model.hparams())
    model.merge_states([model.partial_fit_state(model.iter_batches(tiny_root, "train", ""), 1)])
    model.rebuild()
    again = type(tiny_model)(**tiny_model.hparams()).fit(tiny_root)
    np.testing.assert_array_equal(model.predict(tiny_root).scores, again.predict(tiny_root).scores)
