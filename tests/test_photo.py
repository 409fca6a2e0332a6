"""The photo beside the keypoints: lookup order, JPEG/PNG reading with EXIF orientation, the pixel limit, broken
photos as one-line errors, the fast PNG writer, and the overlay over a real (rotated JPEG) photo."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from resihmr_blender.core.camera import Camera
from resihmr_blender.core.image import ImageError, encode_png, image_size, read_image, read_png, write_png
from resihmr_blender.core.keypoints import KeypointsFile, Person
from resihmr_blender.core.keypoints_io import read_keypoints
from resihmr_blender.core.overlay import fit_background, mask_picture, overlay_picture
from resihmr_blender.core.photo import PhotoError, find_photo, photo_path, photo_size, read_photo

CORPUS = Path(__file__).parent / "data" / "real_openpose"
ROTATED = CORPUS / "made_here_exif_rotated.jpg"  # stored 40x30, EXIF 6: upright 30 wide, 40 tall, top third red
REAL_JSON = CORPUS / "spin_im1010_openpose.json"


def red(pixel) -> bool:
    r, g, b = (int(v) for v in pixel[:3])
    return r > 180 and g < 90 and b < 90


def blue(pixel) -> bool:
    r, g, b = (int(v) for v in pixel[:3])
    return b > 180 and r < 90


def keypoints_beside(tmp_path: Path, name: str = "frame_000000000000_keypoints.json") -> Path:
    target = tmp_path / name
    shutil.copy(REAL_JSON, target)
    return target


# ------------------------------------------------------------------ lookup


def test_openpose_naming_finds_the_jpeg(tmp_path):
    kp = keypoints_beside(tmp_path)
    shutil.copy(ROTATED, tmp_path / "frame_000000000000.jpg")
    kfile = read_keypoints(kp)
    assert photo_path(kfile) == tmp_path / "frame_000000000000.jpg"
    assert photo_size(kfile) == (30, 40)  # as shown, EXIF rotation applied


@pytest.mark.parametrize("photo_name", ["frame_000000000000.JPG", "frame_000000000000.Jpeg",
                                        "frame_000000000000.png"])
def test_openpose_naming_any_case_and_suffix(tmp_path, photo_name):
    kp = keypoints_beside(tmp_path)
    shutil.copy(ROTATED, tmp_path / photo_name)
    assert find_photo(kp) == tmp_path / photo_name


def test_rendered_png_is_never_the_photo(tmp_path):
    kp = keypoints_beside(tmp_path)
    Image.new("RGB", (8, 8)).save(tmp_path / "frame_000000000000_rendered.png")
    assert find_photo(kp) is None
    shutil.copy(ROTATED, tmp_path / "frame_000000000000.jpeg")
    assert find_photo(kp) == tmp_path / "frame_000000000000.jpeg"


def test_plain_json_beside_same_stem_jpeg(tmp_path):
    kp = keypoints_beside(tmp_path, "anna.json")
    shutil.copy(ROTATED, tmp_path / "anna.jpg")
    assert find_photo(kp) == tmp_path / "anna.jpg"
    assert find_photo(tmp_path / "bob.json") is None


def test_image_block_path_comes_first(tmp_path):
    kp = keypoints_beside(tmp_path)
    shutil.copy(ROTATED, tmp_path / "frame_000000000000.jpg")
    (tmp_path / "photos").mkdir()
    shutil.copy(ROTATED, tmp_path / "photos" / "named.jpg")
    kfile = KeypointsFile(path=str(kp), people=[], image_path="photos/named.jpg")
    assert photo_path(kfile) == tmp_path / "photos" / "named.jpg"
    # a named photo that does not exist falls back to the naming convention
    kfile = KeypointsFile(path=str(kp), people=[], image_path="photos/missing.jpg")
    assert photo_path(kfile) == tmp_path / "frame_000000000000.jpg"
    assert photo_path(KeypointsFile(path=str(tmp_path / "x.json"), people=[])) is None


def test_no_photo_is_none(tmp_path):
    kfile = read_keypoints(keypoints_beside(tmp_path))
    assert photo_path(kfile) is None and photo_size(kfile) is None and read_photo(kfile) is None
    assert kfile.warnings == []


# ------------------------------------------------------------------ reading


def test_jpeg_read_upright():
    pixels = read_image(ROTATED)
    assert pixels.shape == (40, 30, 3) and pixels.dtype == np.uint8
    assert red(pixels[2, 15]) and red(pixels[10, 2]) and blue(pixels[30, 15]) and blue(pixels[38, 28])
    assert image_size(ROTATED) == (30, 40)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation(tmp_path, orientation):
    upright = np.zeros((20, 12, 3), np.uint8)
    upright[:, :] = (20, 40, 220)
    upright[:5, :6] = (230, 30, 30)  # top-left corner red
    # what a camera stores for each orientation (the inverse of the transpose that shows it)
    stored = {1: upright, 2: upright[:, ::-1], 3: upright[::-1, ::-1], 4: upright[::-1],
              5: upright.transpose(1, 0, 2), 6: np.rot90(upright, 1), 7: upright[::-1, ::-1].transpose(1, 0, 2),
              8: np.rot90(upright, -1)}[orientation]
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "photo.png"
    Image.fromarray(np.ascontiguousarray(stored)).save(path, exif=exif)
    pixels = read_image(path)
    assert pixels.shape == (20, 12, 3) and image_size(path) == (12, 20)
    assert red(pixels[1, 1]) and blue(pixels[1, 10]) and blue(pixels[18, 1])


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "I;16", "CMYK"])
def test_png_and_other_modes_become_rgb(tmp_path, mode):
    path = tmp_path / ("photo.tif" if mode == "CMYK" else "photo.png")
    image = Image.new("RGB", (7, 5), (200, 100, 50)).convert(mode if mode != "I;16" else "L")
    if mode == "I;16":
        image = Image.fromarray(np.full((5, 7), 40000, np.uint16))
    image.save(path)
    pixels = read_image(path)
    assert pixels.shape == (5, 7, 3) and pixels.dtype == np.uint8


@pytest.mark.parametrize("what, content", [("empty", b""), ("text", b"not a picture\n"),
                                           ("truncated", None), ("folder", None)])
def test_broken_photo_is_one_line_naming_it(tmp_path, what, content):
    path = tmp_path / "frame_000000000000.jpg"
    if what == "folder":
        path.mkdir()
    elif what == "truncated":
        data = (ROTATED.read_bytes())
        path.write_bytes(data[:len(data) // 2])
    else:
        path.write_bytes(content)
    with pytest.raises(ImageError) as e:
        read_image(path)
    message = str(e.value)
    assert str(path) in message and "\n" not in message
    # beside a keypoints file: the overlay goes without the photo, saying why; the size lookup raises
    kfile = read_keypoints(keypoints_beside(tmp_path))
    if what != "folder":  # a folder is not a photo: the lookup skips it
        assert read_photo(kfile) is None
        assert len(kfile.warnings) == 1 and str(path) in kfile.warnings[0]
        assert "without the photo" in kfile.warnings[0]
        with pytest.raises(PhotoError, match=str(path)):
            photo_size(kfile)
    else:
        assert photo_path(kfile) is None


def test_pixel_limit_refuses_before_decoding(tmp_path):
    path = tmp_path / "huge.png"
    Image.new("L", (3000, 2000)).save(path)  # 6 MP, compressed to a few kB
    assert image_size(path) == (3000, 2000)
    with pytest.raises(ImageError, match=r"huge.png: 3000x2000 is 6 megapixels, more than the 5"):
        read_image(path, max_pixels=5_000_000)
    kfile = KeypointsFile(path=str(tmp_path / "huge.json"), people=[])
    assert read_photo(kfile, max_pixels=5_000_000) is None and "megapixels" in kfile.warnings[0]


def test_pillow_bomb_guard_replaced_by_ours(tmp_path):
    # Pillow warns above 89 MP (and refuses above 179 MP); our 100-MP limit is the one that applies
    import warnings

    path = tmp_path / "big.png"
    Image.new("1", (10000, 9500)).save(path)  # 95 MP, a few kB
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert image_size(path) == (10000, 9500)
    with pytest.raises(ImageError, match="95 megapixels, more than the 90"):
        image_size(path, max_pixels=90_000_000)


# ------------------------------------------------------------------ writing


@pytest.mark.parametrize("shape", [(1, 1), (5, 7), (9, 4, 1), (6, 5, 2), (33, 17, 3), (8, 300, 4), (700, 900, 3)])
def test_png_round_trip(tmp_path, shape):
    pixels = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    write_png(tmp_path / "x.png", pixels)
    back = read_png(tmp_path / "x.png")
    np.testing.assert_array_equal(back.reshape(pixels.shape), pixels)
    assert not list(tmp_path.glob("*.tmp*"))


def test_png_mask_is_small_and_bool_becomes_255(tmp_path):
    mask = np.zeros((2000, 3000), bool)
    mask[500:1500, 1000:2000] = True
    data = encode_png(mask)
    assert len(data) < 50_000
    (tmp_path / "m.png").write_bytes(data)
    back = read_png(tmp_path / "m.png")[..., 0]
    assert set(np.unique(back)) == {0, 255} and (back == 255).sum() == mask.sum()


def test_png_reader_without_pillow_reads_our_files(tmp_path):
    from resihmr_blender.core.image import _read_png_without_pillow

    pixels = np.random.default_rng(3).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    write_png(tmp_path / "x.png", pixels)
    np.testing.assert_array_equal(_read_png_without_pillow(tmp_path / "x.png"), pixels)


# ------------------------------------------------------------------ overlay over the photo


class _Mesh:
    """A camera-facing square `size` m wide, 3 m in front of the camera, as a grid of small triangles (the
    rasteriser samples each triangle at most 400 times per edge: like a body's, the triangles must be small)."""

    def __init__(self, size: float = 2.0, cells: int = 40):
        t = np.linspace(-size / 2, size / 2, cells + 1)
        x, y = np.meshgrid(t, t)
        self.posed_vertices = np.column_stack([x.ravel(), y.ravel(), np.full(x.size, 3.0)])
        i = np.arange(cells)[:, None] * (cells + 1) + np.arange(cells)[None, :]
        i = i.ravel()
        self.faces = np.concatenate([np.column_stack([i, i + 1, i + cells + 2]),
                                     np.column_stack([i, i + cells + 2, i + cells + 1])])
        self.residual_mask = np.zeros(len(self.posed_vertices), bool)


def test_overlay_over_rotated_jpeg_photo(tmp_path):
    shutil.copy(ROTATED, tmp_path / "frame_000000000000.jpg")
    kfile = read_keypoints(keypoints_beside(tmp_path))
    photo = read_photo(kfile)
    camera = Camera(30, 40, focal_length=3.0)  # the square covers only the central few pixels
    person = Person(body25=np.zeros((25, 3)))
    picture = overlay_picture(camera, [person], [None], [_Mesh()], photo)
    assert picture.shape == (40, 30, 3)
    assert red(picture[1, 1]) and blue(picture[38, 1])  # the photo, upright, under the mesh
    centre = picture[20, 15].astype(int)
    assert not red(centre) and not blue(centre)  # the grey body blended over the blue photo


def test_overlay_photo_of_another_size():
    camera = Camera(60, 80, focal_length=3.0)
    photo = np.zeros((40, 30, 3), np.uint8)
    photo[:, :] = (20, 40, 220)
    assert fit_background(photo, camera).shape == (80, 60, 3)  # same aspect: scaled
    assert fit_background(np.zeros((40, 40, 3), np.uint8), camera) is None  # another photo: none
    picture = overlay_picture(camera, [], [], [], np.zeros((40, 40, 3), np.uint8))
    assert (picture == 235).all()


def test_large_overlay_draws_only_the_mesh_box_scaled_up(monkeypatch):
    # a large photo's mesh is drawn over its bounding box only, at a capped resolution scaled up: here a
    # 200-px square drawn with 10,000 pixels (half its resolution) stands in for a body on a 24-MP photo
    from resihmr_blender.core import overlay

    monkeypatch.setattr(overlay, "OVERLAY_MESH_PIXELS", 10_000)
    monkeypatch.setattr(overlay, "MASK_MESH_PIXELS", 10_000)
    camera = Camera(1200, 800, focal_length=600.0)
    mesh = _Mesh(size=1.0, cells=10)  # 200 px square in the middle: x 500..700, y 300..500
    photo = np.full((800, 1200, 3), 90, np.uint8)
    picture = overlay_picture(camera, [], [], [mesh], photo)
    assert (picture[:290] == 90).all() and (picture[510:] == 90).all() and (picture[:, :490] == 90).all()
    inside = picture[305:495, 505:695]
    assert (np.abs(inside.astype(int) - [160, 167, 178]) <= 5).all()  # ~0.7 x lit skin grey + 0.3 x the photo
    mask = mask_picture(camera, [mesh])
    assert mask.shape == (800, 1200) and abs(int(mask.sum()) - 200 * 200) < 2500
    assert mask[305:495, 505:695].all() and not mask[:290].any()


def test_without_pillow_photos_are_a_warning_not_a_crash(tmp_path, monkeypatch):
    # Blender's own Python has no Pillow: a photo cannot be read there, which must never stop a run
    shutil.copy(ROTATED, tmp_path / "frame_000000000000.jpg")
    pixels = np.random.default_rng(5).integers(0, 256, (6, 9, 3), dtype=np.uint8)
    write_png(tmp_path / "render.png", pixels)
    kfile = read_keypoints(keypoints_beside(tmp_path))
    monkeypatch.setitem(__import__("sys").modules, "PIL", None)
    with pytest.raises(ImageError, match="Pillow is not installed"):
        read_image(tmp_path / "frame_000000000000.jpg")
    assert read_photo(kfile) is None and "Pillow" in kfile.warnings[0]
    np.testing.assert_array_equal(read_png(tmp_path / "render.png"), pixels)  # the numpy fallback
