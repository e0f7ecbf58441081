"""`vitkit predict`: awkward image formats give the same input as a plain RGB file, unreadable files
are one error each, preprocessing is the checkpoint's own."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import randomize, tiny
from PIL import Image

from vitkit.augment import preprocess_eval
from vitkit.cli import main
from vitkit.predict import predict_files, read_for_model

COLOURS = np.array([[255, 0, 0], [0, 200, 0], [0, 0, 255], [250, 250, 0], [0, 0, 0], [255, 255, 255],
                    [120, 60, 200], [30, 160, 160]], np.uint8)


def base_image() -> Image.Image:
    """24x32 RGB, eight flat colours in 8x8 blocks laid out without symmetry (so rotations differ)."""
    blocks = np.array([[0, 1, 2, 3], [4, 5, 6, 7], [7, 0, 5, 2]])
    return Image.fromarray(COLOURS[blocks].repeat(8, axis=0).repeat(8, axis=1))


@pytest.fixture
def model(tmp_path):
    m = randomize(tiny(patch_size=4, img_size=16, num_classes=5, class_names=list("abcde"),
                       mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3))).eval()
    m.save(tmp_path / "model")
    return m


@pytest.fixture
def files(tmp_path):
    """The same picture stored in several awkward ways, plus a gray one in 8 and 16 bits."""
    d = tmp_path / "imgs"
    d.mkdir()
    base = base_image()
    base.save(d / "base.png")
    rgba = base.convert("RGBA")
    rgba.save(d / "rgba.png")
    pal = base.quantize(colors=8)
    assert np.array_equal(np.asarray(pal.convert("RGB")), np.asarray(base))  # lossless palette
    pal.save(d / "palette.png")
    sideways = base.transpose(Image.Transpose.ROTATE_90)  # stored turned 90 degrees anticlockwise...
    exif = Image.Exif()
    exif[0x0112] = 6  # ...with the tag that says "turn 90 degrees clockwise to display"
    sideways.save(d / "exif_rotated.png", exif=exif)
    sideways.save(d / "no_exif.png")
    base.convert("CMYK").save(d / "cmyk.jpg", quality=95)
    gray = np.asarray(base.convert("L"))
    Image.fromarray(gray).save(d / "gray8.png")
    Image.fromarray(gray.astype(np.uint16) * 257).save(d / "gray16.png")  # 16-bit PNG, same picture
    return d


def probs(predictions, name):
    [p] = [p for p in predictions if p.path.endswith(name)]
    assert p.error is None, p.error
    return dict(p.top)


def test_awkward_formats_give_the_plain_picture(model, files):
    plain = read_for_model(files / "base.png", model.config)
    assert plain.shape == (3, 16, 16) and plain.dtype == torch.uint8
    for name in ("rgba.png", "palette.png", "exif_rotated.png"):
        assert torch.equal(read_for_model(files / name, model.config), plain), name
    # orientation by content: the upright picture's top-left corner is red, its bottom-left teal
    r, g, b = plain[:, 0, 0].tolist()
    assert r > 200 and g < 60 and b < 60
    r, g, b = plain[:, -1, 0].tolist()
    assert r < 80 and g > 120 and b > 120
    assert not torch.equal(read_for_model(files / "no_exif.png", model.config), plain)
    cmyk = read_for_model(files / "cmyk.jpg", model.config).float()
    assert (cmyk - plain.float()).abs().mean() < 8  # JPEG is lossy; the colours survive CMYK
    assert torch.equal(read_for_model(files / "gray16.png", model.config),
                       read_for_model(files / "gray8.png", model.config))

    predictions = predict_files(model, [files], topk=5)
    assert len(predictions) == 8 and all(p.error is None for p in predictions)
    ref = probs(predictions, "base.png")
    assert abs(sum(ref.values()) - 1) < 1e-5 and set(ref) == set("abcde")
    for name in ("rgba.png", "palette.png", "exif_rotated.png"):
        assert probs(predictions, name) == pytest.approx(ref, abs=1e-6), name
    assert probs(predictions, "no_exif.png") != pytest.approx(ref, abs=1e-4)  # orientation matters to this model


def test_probabilities_use_the_checkpoints_own_preprocessing(model, files):
    [p] = predict_files(model, [files / "base.png"], topk=2)
    x = read_for_model(files / "base.png", model.config)[None]
    mean, std = model.config.mean, model.config.std
    with torch.no_grad():
        want = model(preprocess_eval(x, (16, 16), mean, std)).softmax(-1)[0]
        other = model(preprocess_eval(x, (16, 16), (0.5,) * 3, (0.5,) * 3)).softmax(-1)[0]
    top = want.topk(2)
    assert [lab for lab, _ in p.top] == [model.config.class_names[i] for i in top.indices]
    assert [q for _, q in p.top] == pytest.approx(top.values.tolist(), abs=1e-6)
    assert not torch.allclose(want, other, atol=1e-4)  # the normalisation does change the answer


def test_bad_files_are_one_error_line_each_and_the_rest_run(model, files, tmp_path, monkeypatch):
    raw = (files / "base.png").read_bytes()
    (tmp_path / "corrupt.png").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "notes.txt").write_text("not a picture")
    Image.new("RGB", (100, 100)).save(tmp_path / "bomb.png")  # 10,000 pixels: over twice the limit
    Image.new("RGB", (40, 40)).save(tmp_path / "big.png")  # 1,600: over the limit, under twice
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    args = [str(tmp_path / n) for n in ("corrupt.png", "notes.txt", "missing.png", "bomb.png", "big.png")]
    result = CliRunner().invoke(main, ["predict", str(tmp_path / "model"), args[0], str(files / "base.png"),
                                       *args[1:], "--topk", "3", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout.strip().splitlines()[-1])
    preds = out["predictions"]
    assert [p["path"] for p in preds] == [args[0], str(files / "base.png"), *args[1:]]
    good = preds[1]
    assert good["error"] is None and len(good["top"]) == 3 and good["top"][0]["prob"] >= good["top"][1]["prob"]
    errors = {p["path"].rsplit("/", 1)[-1]: p["error"] for p in preds if p["error"]}
    assert set(errors) == {"corrupt.png", "notes.txt", "missing.png", "bomb.png", "big.png"}
    assert all(e.startswith(str(tmp_path)) for e in errors.values())  # each names its file
    assert "truncated" in errors["corrupt.png"] or "broken" in errors["corrupt.png"]
    assert "not an image file" in errors["notes.txt"] and "no such file" in errors["missing.png"]
    assert "decompression bomb" in errors["bomb.png"] and "decompression bomb" in errors["big.png"]
    error_lines = [ln for ln in result.stderr.splitlines() if ln.startswith("error: ")]
    assert len(error_lines) == 5 and not any("Traceback" in ln for ln in result.stderr.splitlines())


def test_exit_status_is_nonzero_only_when_nothing_could_be_predicted(model, tmp_path):
    (tmp_path / "notes.txt").write_text("text")
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(main, ["predict", str(tmp_path / "model"), str(tmp_path / "notes.txt"),
                                       str(tmp_path / "empty"), "--json"])
    assert result.exit_code == 1
    preds = json.loads(result.stdout.strip().splitlines()[-1])["predictions"]
    assert len(preds) == 2 and all(p["error"] for p in preds) and "no image files" in preds[1]["error"]
