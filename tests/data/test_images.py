import numpy as np
import pytest
from PIL import Image

from indad.data import ImageReadError, read_image, read_mask
from indad.data.images import is_image_file, list_images


def test_modes_become_8bit_rgb(tmp_path):
    gray = np.arange(0, 240, dtype=np.uint8).reshape(12, 20)
    Image.fromarray(gray).save(tmp_path / "l.png")
    rgba = np.zeros((12, 20, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 255
    rgba[0, 0, 3] = 0  # one transparent pixel
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(gray).convert("P").save(tmp_path / "p.png")
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "i16.png")

    l_img = read_image(tmp_path / "l.png")
    assert l_img.mode == "RGB" and l_img.size == (20, 12)
    assert np.array_equal(np.asarray(l_img)[..., 1], gray)

    rgba_img = np.asarray(read_image(tmp_path / "rgba.png"))
    assert rgba_img[1, 1].tolist() == [200, 0, 0] and rgba_img[0, 0].tolist() == [0, 0, 0]

    assert read_image(tmp_path / "p.png").mode == "RGB"
    # 16-bit: scaled to 0..255, not clipped at 255.
    i16 = np.asarray(read_image(tmp_path / "i16.png"))[..., 0]
    assert np.abs(i16.astype(int) - gray.astype(int)).max() <= 1


def test_corrupt_and_missing_images_name_the_file(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    with pytest.raises(ImageReadError, match="broken.jpg"):
        read_image(bad)
    with pytest.raises(ImageReadError, match="nothere.png"):
        read_image(tmp_path / "nothere.png")


def test_truncated_image_is_an_error(tmp_path):
    arr = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="cut.png"):
        read_image(tmp_path / "cut.png")


@pytest.mark.parametrize("high", [1, 255, 65535])
def test_masks_binarise_at_any_scale(tmp_path, high):
    m = np.zeros((10, 10), dtype=np.uint16 if high > 255 else np.uint8)
    m[2:5, 3:7] = high
    Image.fromarray(m).save(tmp_path / "m.png")
    out = read_mask(tmp_path / "m.png")
    assert out.dtype == bool and out.sum() == 12 and out[2, 3]


def test_empty_mask_is_all_false(tmp_path):
    Image.fromarray(np.zeros((5, 6), dtype=np.uint8)).save(tmp_path / "m.png")
    assert not read_mask(tmp_path / "m.png").any()


def test_listing_skips_hidden_and_other_files(tmp_path):
    for name in ("b.png", "a.JPG", ".hidden.png", "notes.txt", "Thumbs.db"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in list_images(tmp_path)] == ["a.JPG", "b.png"]
    assert not is_image_file("x.txt")


def _exif_jpeg(path, arr: np.ndarray, orientation: int) -> None:
    """``arr`` saved as a JPEG whose EXIF says how to turn it (6: rotate 90 clockwise to show it upright)."""
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = orientation
    im.save(path, format="JPEG", quality=95, exif=exif.tobytes())


def test_exif_orientation_is_applied_when_reading(tmp_path):
    """Issue 23 item 8: a camera JPEG marked "rotate 90" is read upright, header sizes included."""
    from indad.data.images import image_size

    arr = np.zeros((40, 60, 3), dtype=np.uint8)
    arr[:, :30] = 255  # left half white as stored
    _exif_jpeg(tmp_path / "turned.jpg", arr, 6)
    im = read_image(tmp_path / "turned.jpg")
    assert im.size == (40, 60) == image_size(tmp_path / "turned.jpg")  # width 40, height 60: stood up
    upright = np.asarray(im).mean(axis=2)
    assert upright[:25].mean() > 200 and upright[35:].mean() < 50  # stored left -> top after a 90 deg turn
    _exif_jpeg(tmp_path / "plain.jpg", arr, 1)
    assert read_image(tmp_path / "plain.jpg").size == (60, 40) == image_size(tmp_path / "plain.jpg")
