import json
import struct

import numpy as np
import pytest
import timm
from safetensors.torch import save_file

import indad
from indad.export import ModelFileError, read_header
from indad.methods import NotFittedError, PaDiM


def test_round_trip_is_bit_identical(tiny_model, tiny_root, tmp_path):
    path = tiny_model.save(tmp_path / "m.indad")
    before = tiny_model.predict(tiny_root)
    loaded = indad.load(path)
    after = loaded.predict(tiny_root)
    assert type(loaded) is type(tiny_model) and loaded.hparams() == tiny_model.hparams()
    assert loaded.thresholds == tiny_model.thresholds is not None
    assert np.array_equal(before.scores, after.scores) and np.array_equal(before.maps, after.maps)
    np.testing.assert_array_equal(before.is_defective, after.is_defective)
    # The file is safetensors: an 8-byte length, then a JSON header; nothing to unpickle.
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    meta = json.loads(header["__metadata__"]["indad"])
    assert meta["method"] == tiny_model.method and meta["backbone"]["fingerprint"] == tiny_model.backbone.fingerprint
    assert meta["indad_version"] == indad.__version__ and meta["preprocess"]["resize"] == [64, 64]


def test_other_backbone_weights_are_refused(tiny_root, tmp_path):
    model = PaDiM(image_size=64, d_reduced=20, progress=False).fit(tiny_root)
    path = model.save(tmp_path / "m.indad")
    other = timm.create_model("tf_efficientnet_lite0", pretrained=False)  # random, not ImageNet, weights
    save_file(other.state_dict(), str(tmp_path / "other.safetensors"))
    with pytest.raises(ModelFileError, match="fingerprint .* scores would be meaningless"):
        indad.load(path, weights=tmp_path / "other.safetensors")


def test_bad_files_are_named(tmp_path):
    with pytest.raises(ModelFileError, match="no such model file"):
        indad.load(tmp_path / "missing.indad")
    junk = tmp_path / "junk.indad"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(ModelFileError, match="junk.indad is not an indad model file"):
        read_header(junk)
    plain = tmp_path / "plain.safetensors"
    save_file({"x": __import__("torch").zeros(2)}, str(plain))
    with pytest.raises(ModelFileError, match="not an indad model"):
        indad.load(plain)


def test_unfitted_model_cannot_be_saved(tmp_path):
    with pytest.raises(NotFittedError):
        PaDiM(image_size=64, d_reduced=20, progress=False).save(tmp_path / "m.indad")
    assert not (tmp_path / "m.indad").exists() and list(tmp_path.iterdir()) == []
