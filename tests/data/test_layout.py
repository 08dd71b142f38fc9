"""Which images a dataset or an input holds: the one test for a dataset root, the one dispatch on input forms."""

import pytest

from indad.data import DatasetLayoutError, dataset_folders, is_dataset_root, split_holdout, train_paths
from indad.errors import InputError
from tests.helpers import make_layout


def test_a_dataset_root_has_train_good_or_test(tmp_path):
    full = make_layout(tmp_path / "full")
    (tmp_path / "train_only" / "train" / "good").mkdir(parents=True)
    (tmp_path / "test_only" / "test").mkdir(parents=True)
    (tmp_path / "images").mkdir()
    (tmp_path / "train_without_good" / "train").mkdir(parents=True)
    (tmp_path / ".hidden" / "test").mkdir(parents=True)
    assert is_dataset_root(full) and is_dataset_root(str(tmp_path / "train_only"))
    assert is_dataset_root(tmp_path / "test_only")
    assert not is_dataset_root(tmp_path / "images") and not is_dataset_root(tmp_path / "train_without_good")
    assert not is_dataset_root(tmp_path / "missing")
    assert [p.name for p in dataset_folders(tmp_path)] == ["full", "test_only", "train_only"]
    assert dataset_folders(tmp_path / "missing") == []


def test_training_images_of_every_input_form(tmp_path):
    root = make_layout(tmp_path / "ds", n_train=3)
    good = sorted((root / "train" / "good").iterdir())
    assert train_paths(root) == good  # a dataset root: train/good only, not its test images
    assert train_paths(root / "train" / "good") == good  # a folder of images
    assert train_paths([str(p) for p in good[:2]]) == good[:2]
    test_only = make_layout(tmp_path / "test_only", n_train=0)
    with pytest.raises(DatasetLayoutError, match="folder not found"):
        train_paths(test_only)  # a dataset without train/good: its test images (defects too) do not train
    with pytest.raises(InputError, match="a holdout split"):
        split_holdout([], 0.5)
    kept, held = split_holdout(root, 0.34, seed=1)
    assert len(kept) == 2 and len(held) == 1 and sorted(kept + held) == good
