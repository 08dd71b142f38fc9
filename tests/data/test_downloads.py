"""Dataset downloads, exercised with local archives (nothing downloads here)."""

import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import indad.data.download as download
from indad.data import MTD, DatasetNotFoundError, DownloadError, MVTecAD, layout_mtd, resolve_dataset
from indad.data import mtd as mtd_module
from indad.data import mvtec as mvtec_module
from tests.helpers import make_layout


def _tar(src_dir: Path, archive: Path, arcname: str) -> Path:
    with tarfile.open(archive, "w:xz") as tf:
        tf.add(src_dir, arcname=arcname)
    return archive


def test_mvtec_download_extracts_and_verifies(tmp_path, monkeypatch):
    make_layout(tmp_path / "src" / "bottle")
    archive = _tar(tmp_path / "src" / "bottle", tmp_path / "bottle.tar.xz", "bottle")
    monkeypatch.setitem(mvtec_module.MVTEC_URLS, "bottle", archive.as_uri())
    ds = MVTecAD("bottle", tmp_path / "data", progress=False)
    assert (ds.path / "train" / "good").is_dir() and ds.path == tmp_path / "data" / "bottle"
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["bottle"]  # no leftovers
    # Already there: used as is, no download.
    monkeypatch.setitem(mvtec_module.MVTEC_URLS, "bottle", "file:///nonexistent.tar.xz")
    assert MVTecAD("bottle", tmp_path / "data").path == ds.path


def test_interrupted_download_leaves_nothing(tmp_path, monkeypatch):
    make_layout(tmp_path / "src" / "bottle")
    archive = _tar(tmp_path / "src" / "bottle", tmp_path / "bottle.tar.xz", "bottle")
    monkeypatch.setitem(mvtec_module.MVTEC_URLS, "bottle", archive.as_uri())

    def broken_extract(archive, dest):
        raise KeyboardInterrupt  # e.g. Ctrl-C half way

    monkeypatch.setattr(download, "extract_archive", broken_extract)
    with pytest.raises(KeyboardInterrupt):
        MVTecAD("bottle", tmp_path / "data", progress=False)
    assert list((tmp_path / "data").iterdir()) == []


def test_failed_download_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(mvtec_module.MVTEC_URLS, "bottle", (tmp_path / "absent.tar.xz").as_uri())
    with pytest.raises(DownloadError, match="absent.tar.xz"):
        MVTecAD("bottle", tmp_path / "data", progress=False)
    assert list((tmp_path / "data").iterdir()) == []
    with pytest.raises(DatasetNotFoundError, match="unknown MVTec AD class 'bottel'"):
        MVTecAD("bottel", tmp_path / "data")


def _raw_mtd_from_shared(mtd: Path, raw: Path, per_class: int) -> list[str]:
    """A raw MTD repository tree (MT_*/Imgs/*.jpg + *.png) rebuilt from a few images of the shared copy."""
    train = sorted((mtd / "train" / "good").iterdir())[:per_class]
    good = sorted((mtd / "test" / "good").iterdir())[:per_class]
    free = raw / "MT_Free" / "Imgs"
    free.mkdir(parents=True)
    for p in train + good:
        shutil.copyfile(p, free / p.name)
        Image.fromarray(np.zeros(Image.open(p).size[::-1], dtype=np.uint8)).save(free / f"{p.stem}.png")
    for folder, defect in mtd_module.MTD_DEFECTS.items():
        dst = raw / folder / "Imgs"
        dst.mkdir(parents=True)
        for p in sorted((mtd / "test" / defect).iterdir())[:per_class]:
            shutil.copyfile(p, dst / p.name)
            mask = np.asarray(Image.open(mtd / "ground_truth" / defect / f"{p.stem}_mask.png"))
            # Raw masks are not clean 0/255: add values on both sides of the 127 threshold.
            noisy = np.where(mask > 0, 200, 40).astype(np.uint8)
            Image.fromarray(noisy).save(dst / f"{p.stem}.png")
    return [p.name for p in train]


def test_mtd_layout_matches_the_shared_copy(tmp_path, mtd):
    raw = tmp_path / "unpacked" / "Magnetic-tile-defect-datasets.-master"
    train_names = _raw_mtd_from_shared(mtd, raw, per_class=4)
    out = tmp_path / "out"
    layout_mtd(tmp_path / "unpacked", out, train_names)
    produced = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert len(produced) == 4 * 2 + 4 * 5 * 2
    for rel in produced:
        ours, theirs = out / rel, mtd / rel
        assert theirs.is_file(), rel
        if rel.parts[0] == "ground_truth":
            a, b = Image.open(ours), Image.open(theirs)
            assert a.mode == b.mode == "L" and np.array_equal(np.asarray(a), np.asarray(b)), rel
        else:
            assert ours.read_bytes() == theirs.read_bytes(), rel


def test_mtd_train_list_is_shipped():
    names = mtd_module.differnet_train_list()
    assert len(names) == 761 and len(set(names)) == 761 and all(n.endswith(".jpg") for n in names)


def test_mtd_layout_refuses_incomplete_raw_tree(tmp_path, mtd):
    raw = tmp_path / "unpacked" / "repo"
    _raw_mtd_from_shared(mtd, raw, per_class=2)
    with pytest.raises(DownloadError, match="training images of the split are missing"):
        layout_mtd(tmp_path / "unpacked", tmp_path / "out")  # the full list: most are absent


def test_mtd_download_through_zip(tmp_path, mtd, monkeypatch):
    raw = tmp_path / "raw" / "Magnetic-tile-defect-datasets.-master"
    names = _raw_mtd_from_shared(mtd, raw, per_class=2)
    archive = tmp_path / "master.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in raw.rglob("*"):
            zf.write(p, p.relative_to(tmp_path / "raw"))
    monkeypatch.setattr(mtd_module, "MTD_URL", archive.as_uri())
    monkeypatch.setattr(mtd_module, "differnet_train_list", lambda: names)
    ds = MTD(tmp_path / "data", progress=False)
    assert len(list((ds.path / "train" / "good").iterdir())) == 2
    # The files are those of the shared copy, which was laid out the same way.
    produced = sorted(p.relative_to(ds.path) for p in ds.path.rglob("*") if p.is_file())
    assert len(produced) == 2 * 2 + 2 * 5 * 2  # train and good test images; 2 per defect type and their masks
    for rel in produced:
        if rel.parts[0] != "ground_truth":
            assert (ds.path / rel).read_bytes() == (mtd / rel).read_bytes(), rel
    assert resolve_dataset("mtd", tmp_path / "data") == ds.path


def test_resolve_dataset_errors_list_what_exists(tmp_path):
    make_layout(tmp_path / "root" / "parts")
    assert resolve_dataset("parts", tmp_path / "root") == tmp_path / "root" / "parts"
    assert resolve_dataset(str(tmp_path / "root" / "parts")) == tmp_path / "root" / "parts"
    with pytest.raises(DatasetNotFoundError, match="datasets under .*: parts"):
        resolve_dataset("nuts", tmp_path / "root")


def test_a_missing_dataset_is_the_same_error_for_every_name(tmp_path):
    for name in ("mtd", "bottle", "nuts"):  # MTD, an MVTec AD class, a custom folder: none there, none downloaded
        with pytest.raises(DatasetNotFoundError, match="not found"):
            resolve_dataset(name, tmp_path, download=False)
    with pytest.raises(DatasetNotFoundError, match="unknown MVTec AD class"):
        MVTecAD("bottel", tmp_path)
