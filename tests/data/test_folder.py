import logging

import numpy as np
import pytest
import torch
from PIL import Image

from indad.data import (
    AnomalyDataset,
    DatasetLayoutError,
    ImageReadError,
    Preprocess,
    make_loader,
    read_ahead,
    scan_test,
    scan_train,
)
from indad.errors import ConfigError
from tests.helpers import make_layout, save_image

PRE = Preprocess((32, 32), None, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def test_scan_layout(tmp_path):
    root = make_layout(tmp_path / "ds", n_train=3, defects={"scratch": 2, "dent": 1})
    train = scan_train(root)
    test = scan_test(root)
    assert len(train) == 3 and all(s.label == 0 for s in train)
    assert sorted({s.defect for s in test}) == ["dent", "good", "scratch"]
    assert all(s.mask_path is not None for s in test if s.label == 1)
    assert all(s.has_mask for s in test)


def test_missing_mask_names_the_image(tmp_path):
    root = make_layout(tmp_path / "ds")
    (root / "ground_truth" / "scratch" / "001_mask.png").unlink()
    with pytest.raises(DatasetLayoutError, match=r"001\.png has no mask"):
        scan_test(root)


def test_orphan_mask_names_the_mask(tmp_path):
    root = make_layout(tmp_path / "ds")
    (root / "test" / "scratch" / "001.png").unlink()
    with pytest.raises(DatasetLayoutError, match=r"001_mask\.png has no image"):
        scan_test(root)


def test_defect_without_masks_warns_and_is_image_level_only(tmp_path, caplog):
    root = make_layout(tmp_path / "ds", masks=False)
    with caplog.at_level(logging.WARNING, logger="indad"):
        test = scan_test(root)
    assert "image-level metrics only" in caplog.text
    assert not any(s.has_mask for s in test if s.label == 1)


def test_empty_and_missing_folders(tmp_path):
    (tmp_path / "ds" / "train" / "good").mkdir(parents=True)
    with pytest.raises(DatasetLayoutError, match="no images in"):
        scan_train(tmp_path / "ds")
    with pytest.raises(DatasetLayoutError, match="folder not found"):
        scan_train(tmp_path / "nothing")
    with pytest.raises(DatasetLayoutError, match="no test folder"):
        scan_test(tmp_path / "ds")


def test_items_are_resized_and_masks_nearest(tmp_path):
    root = make_layout(tmp_path / "ds", size=(40, 48))
    ds = AnomalyDataset(scan_test(root), PRE)
    item = next(ds[i] for i in range(len(ds)) if ds[i]["label"] == 1)
    assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
    assert item["mask"].shape == (32, 32) and item["mask"].dtype == torch.bool
    assert set(np.unique(item["mask"].numpy()).tolist()) == {False, True}


def test_wrong_mask_size_is_an_error(tmp_path):
    root = make_layout(tmp_path / "ds", size=(40, 48))
    save_image(root / "ground_truth" / "scratch" / "000_mask.png", np.zeros((20, 20), dtype=np.uint8))
    ds = AnomalyDataset([s for s in scan_test(root) if s.defect == "scratch"], PRE)
    with pytest.raises(ImageReadError, match=r"000_mask\.png is 20x20 but its image .*000\.png is 48x40"):
        ds[0]


def test_centre_crop_applies_to_images_and_masks(tmp_path):
    pre = Preprocess((40, 40), (24, 24), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    im = np.zeros((40, 40, 3), dtype=np.uint8)
    im[8:32, 8:32] = 255
    x = pre.image(Image.fromarray(im))
    assert x.shape == (3, 24, 24) and float(x.min()) > 0.99
    mask = np.zeros((40, 40), dtype=bool)
    mask[20:, :] = True
    assert pre.mask(mask).sum() == 12 * 24
    with pytest.raises(ConfigError, match="larger than the resize"):
        Preprocess((32, 32), (40, 40), (0, 0, 0), (1, 1, 1))


def test_loader_accepts_many_input_forms(tmp_path):
    root = make_layout(tmp_path / "ds", n_train=3)
    paths = sorted((root / "train" / "good").iterdir())
    forms = [
        root,
        root / "train" / "good",
        [str(p) for p in paths],
        paths[0],
        [Image.open(p) for p in paths],
        [np.asarray(Image.open(p)) for p in paths],
    ]
    sizes = [sum(b["image"].shape[0] for b in make_loader(f, PRE, "train", 2)) for f in forms]
    assert sizes == [3, 3, 3, 1, 3, 3]
    # Every form gives the same tensors: the same images, in order, preprocessed alike.
    tensors = [torch.cat([b["image"] for b in make_loader(f, PRE, "train", 2)]) for f in forms]
    for form, t in zip(forms, tensors, strict=True):
        assert torch.equal(t, tensors[0][:1] if t.shape[0] == 1 else tensors[0]), form
    assert not torch.equal(tensors[0][0], tensors[0][1])
    assert sum(b["image"].shape[0] for b in make_loader(root, PRE, "test", 2)) == 4
    with pytest.raises(DatasetLayoutError, match="empty list"):
        make_loader([], PRE, "train", 2)
    with pytest.raises(ImageReadError, match="no such file"):
        make_loader([tmp_path / "missing.png"], PRE, "train", 2)


def test_read_ahead_keeps_order_raises_at_the_failing_item_and_stops_early():
    import threading

    made: list[int] = []

    def items(fail_at: int | None = None):
        for i in range(10):
            if i == fail_at:
                raise ImageReadError(f"item {i} is unreadable")
            made.append(i)
            yield i

    assert list(read_ahead(items())) == list(range(10))
    got = []
    with pytest.raises(ImageReadError, match="item 4"):
        for i in read_ahead(items(fail_at=4)):
            got.append(i)
    assert got == [0, 1, 2, 3]  # every item before the failing one arrives first
    made.clear()
    for i in read_ahead(items(), depth=2):
        if i == 1:
            break
    assert len(made) <= 5  # the thread made at most depth + 2 more, then stopped
    assert not any(t.name == "indad-read-ahead" for t in threading.enumerate())
    # A loader with worker processes reads ahead already: its batches pass through, no thread.
    loader = torch.utils.data.DataLoader(list(range(5)), batch_size=2, num_workers=1)
    batches = read_ahead(loader)
    assert [b.tolist() for b in batches] == [[0, 1], [2, 3], [4]]
