"""indad check on a copy of hazelnut_reduced with planted problems."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from indad.cli.main import cli
from indad.lifecycle.checks import check_dataset, difference_hash, hamming


@pytest.fixture(scope="module")
def planted(hazelnut: Path, tmp_path_factory) -> tuple[Path, dict[str, list[Path]]]:
    """train/good: the 50 good images, an exact duplicate, a resized near duplicate, a copy of a test image, two
    defective test images; test: 2 good and 2 cut images, one cut mask of the wrong size; an unreadable file."""
    root = tmp_path_factory.mktemp("check") / "hazelnut"
    train = root / "train" / "good"
    train.mkdir(parents=True)
    goods = sorted((hazelnut / "train" / "good").iterdir())
    for p in goods:
        shutil.copyfile(p, train / p.name)
    shutil.copyfile(goods[0], train / "dup.png")
    Image.open(goods[1]).resize((512, 512)).save(train / "near.png")
    test_goods = sorted((hazelnut / "test" / "good").iterdir())[:2]
    cuts = sorted((hazelnut / "test" / "cut").iterdir())[:2]
    for folder, files in (("good", test_goods), ("cut", cuts)):
        (root / "test" / folder).mkdir(parents=True)
        for p in files:
            shutil.copyfile(p, root / "test" / folder / p.name)
    (root / "ground_truth" / "cut").mkdir(parents=True)
    shutil.copyfile(hazelnut / "ground_truth" / "cut" / f"{cuts[0].stem}_mask.png",
                    root / "ground_truth" / "cut" / f"{cuts[0].stem}_mask.png")  # fmt: skip
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(root / "ground_truth" / "cut" / f"{cuts[1].stem}_mask.png")
    shutil.copyfile(test_goods[0], train / "leaked.png")
    defective = [hazelnut / "test" / d / "000.png" for d in ("print", "crack")]
    for i, p in enumerate(defective):
        shutil.copyfile(p, train / f"planted_defect_{i}.png")
    (train / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return root, {"cuts": cuts}


def test_difference_hash_sees_resizes_as_near():
    rng = np.random.default_rng(0)
    a = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).resize((256, 256))
    assert hamming(difference_hash(a), difference_hash(a.resize((200, 200)))) <= 6
    b = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).resize((256, 256))
    assert hamming(difference_hash(a), difference_hash(b)) > 16


def test_check_finds_what_was_planted(planted, tmp_path: Path):
    root, files = planted
    report = check_dataset(root, folds=3, image_size=128, f_coreset=0.1, device="cpu", heatmaps=tmp_path / "maps")
    train = root / "train" / "good"
    assert [u["path"] for u in report.unreadable] == [str(train / "broken.png")]
    assert any(str(train / "dup.png") in group for group in report.duplicates)
    assert any({n["a"], n["b"]} >= {str(train / "near.png")} for n in report.near_duplicates)
    assert [t["train"] for t in report.test_in_train] == [str(train / "leaked.png")]
    assert {m["path"] for m in report.masks} == {str(root / "test" / "cut" / files["cuts"][1].name)}
    assert any(o["path"] == str(train / "near.png") for o in report.odd_formats)
    suspects = [Path(s["path"]).name for s in report.suspects]
    assert {"planted_defect_0.png", "planted_defect_1.png"} <= set(suspects), report.suspects
    assert len(suspects) <= 4, report.suspects  # at most 2 good images flagged
    assert all(Path(s["heatmap"]).is_file() for s in report.suspects)


def test_check_command_writes_json_and_fit_warns(planted, tmp_path: Path):
    root, _ = planted
    out = CliRunner().invoke(cli, ["check", str(root), "--folds", "0", "--json", str(tmp_path / "r.json")])
    assert out.exit_code == 0, out.output
    assert "test images also in train" in out.output and "k-fold: skipped" in out.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert len(report["test_in_train"]) == 1 and report["suspects"] == []
    from indad.lifecycle.checks import quick_warnings

    warnings = quick_warnings(root)  # what `indad fit` prints before fitting
    assert any("test in train" in w for w in warnings) and any("unreadable" in w for w in warnings)
