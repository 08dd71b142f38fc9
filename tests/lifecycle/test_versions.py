"""Model versions: lineage in every model file, older files still load, listing, rollback."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from indad.cli.main import cli
from indad.errors import InputError
from indad.export.model_file import read_header, read_tensors, write_model_file
from indad.lifecycle.versions import describe_model, list_models, rollback
from indad.lineage import file_sha256
from indad.methods import load_model


def test_a_fitted_model_has_a_new_version_and_its_training_set(tiny_model_file: Path, tiny_dataset: Path):
    header = read_header(tiny_model_file)
    lineage = header["lineage"]
    assert lineage["parent"] is None and lineage["changes"]["fitted"] is True
    assert lineage["changes"]["thresholds_after"]["image"] == header["thresholds"]["image"]
    training = header["training_set"]
    files = sorted((tiny_dataset / "train" / "good").iterdir())
    assert training["count"] == len(files) and sorted(training["hashes"]) == sorted(map(file_sha256, files))
    assert len(training["digest"]) == 64 and header["score_reference"]["n"] == 3


def test_changes_make_a_child_version_and_an_unchanged_save_keeps_it(tiny_model_file: Path, tiny_dataset, tmp_path):
    parent = read_header(tiny_model_file)["lineage"]["version"]
    model = load_model(tiny_model_file, device="cpu")
    model.save(tmp_path / "same.indad")
    assert read_header(tmp_path / "same.indad")["lineage"]["version"] == parent
    before = model.thresholds
    model.add_normal(sorted((tiny_dataset / "test" / "good").iterdir()))
    model.calibrate(sorted((tiny_dataset / "train" / "good").iterdir())[:3])
    model.save(tmp_path / "child.indad")
    child = read_header(tmp_path / "child.indad")["lineage"]
    assert child["parent"] == parent and child["version"] != parent
    assert child["changes"]["images_added"] == 2
    assert child["changes"]["thresholds_before"] == before.to_dict()
    assert child["changes"]["thresholds_after"] == model.thresholds.to_dict()


def test_an_older_file_without_lineage_still_loads_and_is_listed(tiny_model_file: Path, tmp_path: Path):
    header = read_header(tiny_model_file)
    old = {k: v for k, v in header.items() if k not in ("format", "lineage", "training_set", "score_reference")}
    write_model_file(tmp_path / "old.indad", read_tensors(tiny_model_file), old)
    model = load_model(tmp_path / "old.indad", device="cpu")
    assert model.provenance == {} and model.thresholds is not None
    listed = list_models(tmp_path)
    assert [m.version for m in listed] == [None] and "older file" in listed[0].summary()


def test_models_lists_and_rollback_makes_an_earlier_version_current(tiny_model_file: Path, tiny_dataset, tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    v1 = folder / "v1.indad"
    shutil.copyfile(tiny_model_file, v1)
    model = load_model(v1, device="cpu")
    model.add_normal(sorted((tiny_dataset / "test" / "good").iterdir()))
    model.save(folder / "v2.indad")
    current = folder / "current.indad"
    shutil.copyfile(folder / "v2.indad", current)
    first, second = describe_model(v1).version, describe_model(folder / "v2.indad").version
    assert first is not None and second is not None

    out = CliRunner().invoke(cli, ["models", str(folder)])
    assert out.exit_code == 0, out.output
    assert first in out.output and second in out.output and "+2 good images" in out.output

    out = CliRunner().invoke(cli, ["rollback", str(current), first])
    assert out.exit_code == 0, out.output
    assert describe_model(current).version == first
    # the replaced version is still in the folder (v2.indad), so no extra copy is made
    assert sorted(p.name for p in folder.iterdir()) == ["current.indad", "v1.indad", "v2.indad"]
    # rolling forward again works the same way
    assert rollback(current, second).version == second
    with pytest.raises(InputError, match="no model file"):
        rollback(current, "1999")
