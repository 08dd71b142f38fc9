"""Shared fixtures: the real datasets, an MTD subset, tiny synthetic datasets and models (helpers: tests/helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import MTD_SMALL, TINY_PARAMS, make_layout, shared_datasets, subset_layout


@pytest.fixture(scope="session")
def datasets_root() -> Path:
    return shared_datasets()


@pytest.fixture(scope="session")
def hazelnut(datasets_root: Path) -> Path:
    return datasets_root / "hazelnut_reduced"


@pytest.fixture(scope="session")
def mtd(datasets_root: Path) -> Path:
    path = datasets_root / "mtd"
    if not path.is_dir():
        pytest.skip("MTD is not available")
    return path


@pytest.fixture(scope="session")
def mtd_small(mtd: Path, tmp_path_factory) -> Path:
    """A fixed subset of MTD (:data:`MTD_SMALL`) in a session folder named ``mtd``: ``--dataset mtd`` finds it too."""
    return subset_layout(
        mtd,
        tmp_path_factory.mktemp("mtd_small") / "mtd",
        MTD_SMALL["train"],
        MTD_SMALL["good"],
        MTD_SMALL["per_defect"],
    )


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    return make_layout(tmp_path_factory.mktemp("tiny") / "ds", n_train=8, size=(64, 64))


@pytest.fixture(scope="session", params=sorted(TINY_PARAMS))
def tiny_model(request, tiny_root):
    """Each method fitted on tiny random images at 64 px, thresholds from 2 held-out images."""
    from indad.methods import METHODS

    cls = METHODS[request.param]
    return cls(image_size=64, batch_size=4, progress=False, **TINY_PARAMS[request.param]).fit(tiny_root, holdout=0.25)


def run_first_rank(item: pytest.Item) -> int:
    """0 for the full-MTD runs (slow), 1 for the other long ones (MTD subset, Ray, browser), 2 for the rest."""
    if item.get_closest_marker("slow") is not None:
        return 0
    callspec = getattr(item, "callspec", None)
    if any(item.get_closest_marker(m) is not None for m in ("ray", "browser")):
        return 1
    return 1 if callspec is not None and "variant" in callspec.params else 2


def pytest_collection_modifyitems(items: list) -> None:
    """The long tests first (in their order), so that the two workers finish together."""
    items.sort(key=run_first_rank)
