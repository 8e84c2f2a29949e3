import os
import pickle
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from datamodules import CIFAR10, MNIST, CelebA, Digits, ImageDataModule, ImageFolder
from gans import Vanilla
from tests.helpers import quiet_trainer


def fake_trainer(rank=0, world=1, step=0):
    """What ``train_dataloader`` reads from the trainer: the process's rank, the world size and the iteration."""
    return SimpleNamespace(global_rank=rank, world_size=world, global_step=step)


def batches(dm, n=None):
    out = []
    for i, batch in enumerate(dm.train_dataloader()):
        if n is not None and i == n:
            break
        out.append(batch)
    return out


# -- Digits -----------------------------------------------------------------------------------------


def test_digits_images_labels_and_shapes():
    from sklearn.datasets import load_digits

    dm = Digits()
    assert isinstance(dm, ImageDataModule) and dm.sample_shape == (1, 32, 32) and dm.num_classes == 10
    dm.setup("fit")
    data = dm.eval_dataset()
    assert data is dm.dataset and len(data) == 1797
    image, label = data[0]
    assert image.shape == (1, 32, 32) and image.dtype == torch.float32 and isinstance(label, int)
    every = torch.stack([data[i][0] for i in range(len(data))])
    assert every.min() == -1 and every.max() == 1                            # [-1, 1], both ends reached
    assert sorted({data[i][1] for i in range(len(data))}) == list(range(10))
    # at resolution 8 the pixels are the bundled ones, 0..16 -> [-1, 1]
    raw = load_digits()
    small = Digits(resolution=8).dataset
    for i in (0, 1000, 1796):
        torch.testing.assert_close(small[i][0][0], torch.tensor(raw.images[i], dtype=torch.float32) / 8 - 1)
        assert small[i][1] == raw.target[i]
    rgb = Digits(channels=3)
    assert rgb.sample_shape == (3, 32, 32)
    image3, label3 = rgb.dataset[7]
    assert image3.shape == (3, 32, 32) and label3 == data[7][1]
    assert all(torch.equal(image3[c], data[7][0][0]) for c in range(3))


def test_digits_batches_are_deterministic_and_resumable():
    dm = Digits(batch_size=32, seed=3)
    loader = dm.train_dataloader()
    assert len(loader) == 1797 // 32
    first, again = batches(dm), batches(dm)
    assert len(first) == 56 and first[0][0].shape == (32, 1, 32, 32) and first[0][1].shape == (32,)
    assert first[0][1].dtype == torch.int64
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    assert not torch.equal(first[0][0], first[1][0])
    # the epoch visits every sample at most once (the 1797 digits are all distinct) and all but the 29 dropped
    index = {dm.dataset[i][0].numpy().tobytes(): i for i in range(len(dm.dataset))}
    seen = [index[img.numpy().tobytes()] for images, _ in first for img in images]
    assert len(seen) == 56 * 32 and len(set(seen)) == len(seen)
    # a run resumed at iteration 5 continues with batches 5, 6, ... of the epoch
    dm.trainer = fake_trainer(step=5)
    resumed = batches(dm)
    assert len(resumed) == 56 - 5
    assert all(torch.equal(r[0], f[0]) and torch.equal(r[1], f[1]) for r, f in zip(resumed, first[5:]))
    shifted = dm.train_dataloader().dataset
    assert torch.equal(shifted.batch(5)[0], resumed[0][0]) and torch.equal(shifted.batch(6)[0], resumed[1][0])


def test_digits_seed_changes_the_order():
    assert not torch.equal(batches(Digits(batch_size=32, seed=3), 1)[0][0], batches(Digits(batch_size=32, seed=4), 1)[0][0])


def test_digits_processes_slice_the_global_batch():
    """Two processes with batch 16 see exactly what one process with batch 32 sees."""
    whole = Digits(batch_size=32)
    halves = [Digits(batch_size=16) for _ in range(2)]
    for rank, dm in enumerate(halves):
        dm.trainer = fake_trainer(rank, world=2)
    one = batches(whole, 3)
    two = [batches(dm, 3) for dm in halves]
    assert len(whole.train_dataloader()) == len(halves[0].train_dataloader()) == 1797 // 32
    for i in range(3):
        assert torch.equal(torch.cat([two[0][i][0], two[1][i][0]]), one[i][0])
        assert torch.equal(torch.cat([two[0][i][1], two[1][i][1]]), one[i][1])
    assert not torch.equal(two[0][0][0], two[1][0][0])


def test_digits_fingerprint_and_hyperparameters():
    fp = Digits().fingerprint()
    assert re.fullmatch(r"[0-9a-f]{16}", fp)
    assert Digits(batch_size=7, seed=5).fingerprint() == fp                # the order of batches is not the data
    assert Digits(resolution=16).fingerprint() != fp
    assert Digits(channels=3).fingerprint() != fp
    dm = Digits(resolution=16, channels=3, batch_size=8, seed=2)
    assert dict(dm.hparams) == {"resolution": 16, "channels": 3, "batch_size": 8, "num_workers": 0, "seed": 2}
    assert Digits(**dm.hparams).fingerprint() == dm.fingerprint()


def test_bad_resolution_and_channels():
    with pytest.raises(ValueError, match="resolution=4"):
        Digits(resolution=4)
    with pytest.raises(ValueError, match="channels=2"):
        ImageFolder("anywhere", channels=2)
    with pytest.raises(ValueError, match="resolution=7"):
        MNIST(resolution=7)
    with pytest.raises(ValueError, match="channels=4"):
        CelebA(channels=4)


# -- ImageFolder ------------------------------------------------------------------------------------


def stripes(width, height, colours):
    """An RGB image of vertical stripes of equal width, one per colour."""
    arr = np.zeros((height, width, 3), np.uint8)
    for k, colour in enumerate(colours):
        arr[:, k * width // len(colours):(k + 1) * width // len(colours)] = colour
    return Image.fromarray(arr)


def test_image_folder_flat(tmp_path):
    red, green, blue = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    stripes(48, 16, [red, green, blue]).save(tmp_path / "a.png")                 # wide: crop keeps the middle
    Image.new("L", (20, 20), 255).save(tmp_path / "b.PNG")                       # grey, upper-case extension
    Image.new("RGBA", (30, 50), (0, 0, 255, 128)).save(tmp_path / "c.png")       # tall, with alpha
    (tmp_path / "more").mkdir()
    Image.new("P", (12, 9)).save(tmp_path / "more" / "d.bmp")                    # palette, in a subfolder
    (tmp_path / "notes.txt").write_text("not an image")
    dm = ImageFolder(str(tmp_path), resolution=8, batch_size=2)
    dm.setup("fit")
    data = dm.eval_dataset()
    assert [p.relative_to(tmp_path).as_posix() for p in data.paths] == ["a.png", "b.PNG", "c.png", "more/d.bmp"]
    assert dm.sample_shape == (3, 8, 8) and dm.num_classes is None
    items = [data[i] for i in range(len(data))]
    assert all(x.shape == (3, 8, 8) and x.dtype == torch.float32 and y == 0 for x, y in items)
    a, b, c, d = (x for x, _ in items)
    middle = a[:, :, 1:7]                                                        # away from the stripe edges
    assert torch.equal(middle, torch.tensor([-1.0, 1.0, -1.0]).view(3, 1, 1).expand_as(middle))
    assert torch.equal(b, torch.ones(3, 8, 8))
    assert torch.equal(c, torch.tensor([-1.0, -1.0, 1.0]).view(3, 1, 1).expand(3, 8, 8))
    assert torch.equal(d, -torch.ones(3, 8, 8))
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (2, 3, 8, 8) and labels.tolist() == [0, 0]
    grey = ImageFolder(tmp_path, resolution=8, channels=1)
    assert grey.sample_shape == (1, 8, 8)
    green_luma = Image.new("RGB", (1, 1), green).convert("L").getpixel((0, 0))
    g = grey.dataset[0][0]
    assert g.shape == (1, 8, 8)
    torch.testing.assert_close(g[:, :, 1:7], torch.full((1, 8, 6), green_luma / 127.5 - 1))
    assert torch.equal(grey.dataset[1][0], torch.ones(1, 8, 8))


def test_image_folder_class_subfolders_and_fingerprint(tmp_path):
    for name, size, mode in [("cat/x.png", (40, 30), "RGB"), ("cat/deep/y.jpg", (64, 64), "RGB"),
                             ("dog/z.webp", (16, 24), "L"), ("dog/w.JPEG", (33, 17), "RGB")]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new(mode, size, 128).save(tmp_path / name)
    (tmp_path / "empty").mkdir()
    dm = ImageFolder(tmp_path, resolution=16)
    assert dm.num_classes == 2 and dm.classes == ["cat", "dog"]
    data = dm.eval_dataset()
    assert [data[i][1] for i in range(len(data))] == [0, 0, 1, 1]
    assert all(data[i][0].shape == (3, 16, 16) for i in range(len(data)))
    fp = dm.fingerprint()
    assert ImageFolder(tmp_path, resolution=16).fingerprint() == fp
    assert ImageFolder(tmp_path, resolution=32).fingerprint() != fp
    Image.new("RGB", (20, 20)).save(tmp_path / "dog" / "v.png")
    grown = ImageFolder(tmp_path, resolution=16)
    grown_fp = grown.fingerprint()
    assert len(grown.dataset) == 5 and grown_fp != fp
    Image.new("RGB", (40, 40), (1, 2, 3)).save(tmp_path / "dog" / "v.png")      # same files, new content
    os.utime(tmp_path / "dog" / "v.png", ns=(1, 1))
    changed = ImageFolder(tmp_path, resolution=16)
    assert len(changed.dataset) == 5 and changed.fingerprint() not in (fp, grown_fp)
    # an image at the top level: no longer a class layout
    Image.new("RGB", (20, 20)).save(tmp_path / "top.png")
    flat = ImageFolder(tmp_path, resolution=16)
    assert flat.num_classes is None and {flat.dataset[i][1] for i in range(6)} == {0}


def test_image_folder_errors(tmp_path):
    missing = tmp_path / "nowhere"
    dm = ImageFolder(str(missing))                                              # lazy: no error yet
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing.absolute())) + ".*does not exist.*image files"):
        dm.setup("fit")
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match=re.escape(f"no images found in {empty}") + ".*png.*jpeg.*webp"):
        ImageFolder(str(empty)).setup("fit")


# -- torchvision sets -------------------------------------------------------------------------------


@pytest.mark.parametrize("cls, where, names", [
    (CIFAR10, "cifar-10-batches-py", ["data_batch_1", "test_batch", "batches.meta"]),
    (MNIST, os.path.join("MNIST", "raw"), ["train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]),
    (CelebA, "celeba", ["img_align_celeba", "list_eval_partition.txt"]),
])
def test_torchvision_missing_files(tmp_path, monkeypatch, cls, where, names):
    monkeypatch.chdir(tmp_path)
    dm = cls()                                                                   # root "data", relative
    with pytest.raises(FileNotFoundError) as err:
        dm.setup("fit")
    message = str(err.value)
    assert str(tmp_path / "data" / where) in message
    assert "download=True" in message and "--data.download true" in message
    assert all(name in message for name in names)


def write_idx(path: Path, array: np.ndarray) -> None:
    """An MNIST idx file: magic (0, 0, type 0x08 = ubyte, ndim), the big-endian sizes, the bytes."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_mnist_from_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    train, test = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8), rng.integers(0, 256, (2, 28, 28), dtype=np.uint8)
    train[0, 0, 0], train[0, 0, 1] = 0, 255
    write_idx(raw / "train-images-idx3-ubyte", train)
    write_idx(raw / "train-labels-idx1-ubyte", np.array([3, 1, 4, 1, 5]))
    write_idx(raw / "t10k-images-idx3-ubyte", test)
    write_idx(raw / "t10k-labels-idx1-ubyte", np.array([9, 2]))
    dm = MNIST(str(tmp_path), resolution=28, batch_size=2)
    dm.setup("fit")
    data = dm.eval_dataset()
    assert len(data) == 5 and dm.num_classes == 10 and dm.sample_shape == (1, 28, 28)
    expected = torch.from_numpy(train).float()[:, None] / 127.5 - 1
    for i in range(5):
        assert data[i][0].dtype == torch.float32 and torch.equal(data[i][0], expected[i])
    assert data[0][0][0, 0, 0] == -1 and data[0][0][0, 0, 1] == 1
    assert [data[i][1] for i in range(5)] == [3, 1, 4, 1, 5]
    test_set = MNIST(str(tmp_path), resolution=28, train=False)
    assert [y for _, y in test_set.dataset] == [9, 2] and torch.equal(test_set.dataset[1][0], (
        torch.from_numpy(test[1]).float()[None] / 127.5 - 1))
    assert test_set.fingerprint() != dm.fingerprint()
    big = MNIST(str(tmp_path), resolution=32, channels=3)
    image, _ = big.dataset[2]
    assert big.sample_shape == image.shape == (3, 32, 32) and image.min() >= -1 and image.max() <= 1
    resized = F.interpolate(expected[2:3], size=(32, 32), mode="bilinear", align_corners=False)[0, 0]
    assert all(torch.allclose(image[c], resized) for c in range(3))
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (2, 1, 28, 28) and labels.shape == (2,)
    assert dm.fingerprint() == MNIST(str(tmp_path), resolution=28).fingerprint()


def test_cifar10_from_pickles(tmp_path, monkeypatch):
    # torchvision checks the md5 of every CIFAR-10 file against the real data set's; files written by a
    # test cannot pass that check, so it is monkeypatched to a plain existence check (this test only).
    import torchvision.datasets.cifar as tv_cifar

    monkeypatch.setattr(tv_cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(1)
    rows = rng.integers(0, 256, (11, 3 * 32 * 32), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 10, 11)]
    for k in range(5):
        with open(folder / f"data_batch_{k + 1}", "wb") as f:
            pickle.dump({"data": rows[2 * k:2 * k + 2], "labels": labels[2 * k:2 * k + 2]}, f)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": rows[10:], "labels": labels[10:]}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, f)
    dm = CIFAR10(str(tmp_path), batch_size=4)
    dm.setup("fit")
    data = dm.eval_dataset()
    assert len(data) == 10 and dm.sample_shape == (3, 32, 32) and dm.num_classes == 10
    expected = torch.from_numpy(rows).float().view(11, 3, 32, 32) / 127.5 - 1   # rows are R, G, B planes
    for i in range(10):
        assert torch.equal(data[i][0], expected[i]) and data[i][1] == labels[i]
    test_set = CIFAR10(str(tmp_path), train=False)
    assert len(test_set.dataset) == 1 and torch.equal(test_set.dataset[0][0], expected[10])
    grey = CIFAR10(str(tmp_path), resolution=16, channels=1)
    g = grey.dataset[0][0]
    assert g.shape == (1, 16, 16) and g.min() >= -1 and g.max() <= 1
    images, batch_labels = next(iter(dm.train_dataloader()))
    assert images.shape == (4, 3, 32, 32) and batch_labels.shape == (4,)


def test_celeba_from_files(tmp_path, monkeypatch):
    # as for CIFAR-10: torchvision's md5 check of the annotation files is replaced by an existence check
    import torchvision.datasets.celeba as tv_celeba

    monkeypatch.setattr(tv_celeba, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))
    folder = tmp_path / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True)
    names = ["000001.jpg", "000002.jpg", "000003.jpg", "000004.jpg"]
    for name, colour in zip(names, [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)]):
        Image.new("RGB", (18, 22), colour).save(folder / "img_align_celeba" / name, format="PNG")
    (folder / "list_eval_partition.txt").write_text("".join(f"{n} {s}\n" for n, s in zip(names, [0, 0, 2, 2])))
    (folder / "identity_CelebA.txt").write_text("".join(f"{n} 7\n" for n in names))
    (folder / "list_bbox_celeba.txt").write_text("4\nimage_id x_1 y_1 width height\n"
                                                 + "".join(f"{n} 1 2 3 4\n" for n in names))
    (folder / "list_landmarks_align_celeba.txt").write_text("4\n" + " ".join(f"p{i}" for i in range(10)) + "\n"
                                                            + "".join(f"{n} {' '.join(['5'] * 10)}\n" for n in names))
    (folder / "list_attr_celeba.txt").write_text("4\nSmiling Young\n" + "".join(f"{n} 1 -1\n" for n in names))
    dm = CelebA(str(tmp_path), resolution=8)
    dm.setup("fit")
    data = dm.eval_dataset()
    assert len(data) == 2 and dm.sample_shape == (3, 8, 8) and dm.num_classes is None
    image, label = data[1]
    assert label == 0 and torch.equal(image, torch.tensor([-1.0, 1.0, -1.0]).view(3, 1, 1).expand(3, 8, 8))
    test_set = CelebA(str(tmp_path), resolution=8, split="test", channels=1)
    assert len(test_set.dataset) == 2 and test_set.dataset[1][0].shape == (1, 8, 8)
    assert torch.equal(test_set.dataset[1][0], torch.ones(1, 8, 8))             # the white one, in grey
    assert test_set.fingerprint() != dm.fingerprint() and CelebA(str(tmp_path), resolution=8).fingerprint() == dm.fingerprint()


# -- training ---------------------------------------------------------------------------------------


def tiny_image_gan(side=32, latent_dim=8):
    torch.manual_seed(0)
    g = nn.Sequential(nn.Linear(latent_dim, side * side), nn.Unflatten(1, (1, side, side)), nn.Tanh())
    d = nn.Sequential(nn.Flatten(), nn.Linear(side * side, 1))
    return Vanilla(g, d, latent_dim=latent_dim)


def test_short_training_run_on_digits(tmp_path):
    model, dm = tiny_image_gan(), Digits(batch_size=16)
    before = [p.detach().clone() for p in model.parameters()]
    trainer = quiet_trainer(3)
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 3
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    trainer.save_checkpoint(tmp_path / "run.ckpt")
    rebuilt = Digits.load_from_checkpoint(tmp_path / "run.ckpt")
    assert dict(rebuilt.hparams) == dict(dm.hparams) and rebuilt.fingerprint() == dm.fingerprint()


def test_data_loader_workers_persist_across_epochs_and_train_as_without_them():
    """Workers kept from one epoch to the next (their start is a fork of the whole process) see the
    trainer as it was when they started: the batches themselves say where the next epoch begins.
    Batches of 64 digits make epochs of 28 batches, so 30 iterations cross into the second."""
    runs = []
    for workers in (0, 2):
        model, dm = tiny_image_gan(), Digits(batch_size=64, num_workers=workers)
        trainer = quiet_trainer(30)
        trainer.fit(model, datamodule=dm)
        runs.append(model.state_dict())
        if workers:
            assert trainer.train_dataloader.persistent_workers
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_generator_size_must_match_the_data():
    model = tiny_image_gan(side=16)
    with pytest.raises(ValueError, match=re.escape("data has samples of shape (1, 32, 32)")):
        model.check_networks(Digits().sample_shape)
    with pytest.raises(ValueError, match=re.escape("returns samples of shape (1, 16, 16)")):
        quiet_trainer(1).fit(model, datamodule=Digits(batch_size=16))
