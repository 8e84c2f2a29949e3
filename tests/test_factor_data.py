"""The factor-labelled image folder: codes and labelled flags per image, clear errors."""
import numpy as np
import pytest
import torch
from PIL import Image

from datamodules import FactorImageFolder


def folder(tmp_path, rows="path,size,hue\na.png,0.5,1.0\nsub/c.png,0.0,0.25\n"):
    (tmp_path / "imgs" / "sub").mkdir(parents=True)
    for name, value in (("a.png", 50), ("b.png", 120), ("sub/c.png", 200)):
        Image.fromarray(np.full((20, 24, 3), value, dtype=np.uint8)).save(tmp_path / "imgs" / name)
    (tmp_path / "labels.csv").write_text(rows)
    return FactorImageFolder(str(tmp_path / "imgs"), str(tmp_path / "labels.csv"), resolution=16, batch_size=3)


def test_codes_and_labelled_flags_follow_the_labels_file(tmp_path):
    data = folder(tmp_path)
    assert data.factor_names == ["size", "hue"] and len(data.dataset) == 3 and data.sample_shape == (3, 16, 16)
    by_value = {round(float(data.dataset[i][0].mean()), 2): data.dataset[i][1:] for i in range(3)}
    codes, labelled = by_value[round(50 / 127.5 - 1, 2)]
    assert labelled and torch.allclose(codes, torch.tensor([0.5, 1.0]))
    codes, labelled = by_value[round(120 / 127.5 - 1, 2)]
    assert not labelled and torch.equal(codes, torch.zeros(2))
    assert torch.allclose(by_value[round(200 / 127.5 - 1, 2)][0], torch.tensor([0.0, 0.25]))
    images, codes, labelled = next(iter(data.train_dataloader()))
    assert images.shape == (3, 3, 16, 16) and codes.shape == (3, 2) and int(labelled.sum()) == 2
    before = data.fingerprint()
    (tmp_path / "labels.csv").write_text("path,size,hue\na.png,0.5,0.9\n")
    assert FactorImageFolder(str(tmp_path / "imgs"), str(tmp_path / "labels.csv"), resolution=16).fingerprint() != before


@pytest.mark.parametrize("rows,message", [
    ("file,size\na.png,0.5\n", "the first line must be the header path"),
    ("path,size\na.png,0.5,0.1\n", "line 2: expected a path and 1 values, got 3 fields"),
    ("path,size\na.png,1.5\n", "line 2: factor values must be normalised to"),
    ("path,size\nnope.png,0.5\n", "labels 1 image\\(s\\) not found under .*'nope.png'"),
])
def test_bad_labels_files_are_named(tmp_path, rows, message):
    with pytest.raises(ValueError, match=message):
        folder(tmp_path, rows).setup("fit")


def test_a_missing_labels_file_is_named(tmp_path):
    folder(tmp_path)                                       # writes the images and the labels file
    (tmp_path / "labels.csv").unlink()
    with pytest.raises(FileNotFoundError, match="labels file .*labels.csv does not exist"):
        FactorImageFolder(str(tmp_path / "imgs"), str(tmp_path / "labels.csv")).setup("fit")
