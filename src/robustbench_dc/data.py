"""Datasets as uint8 image tensors in memory: ``load_dataset(name, split)``.

Every dataset is small enough to hold decoded (CIFAR-10 is 180 MB as uint8), which makes training loops,
seeded subsets and attacks simple and fast. Decoding an image folder is slow, so its arrays are cached.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from robustbench_dc.errors import DataNotFoundError, UserError
from robustbench_dc.files import atomic_write
from robustbench_dc.models.registry import CIFAR_MEAN, CIFAR_STD
from robustbench_dc.names import DATASETS, unknown

log = logging.getLogger(__name__)

SPLITS = ("train", "test")
FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass(frozen=True)
class DatasetInfo:
    """What a model for this dataset needs to know: shape, classes and normalisation."""

    name: str
    num_classes: int
    in_channels: int
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: bool  # random crop + flip make sense (natural images)
    input_width: int = 0  # images wider or narrower than high (the caller's own tensors); 0: square

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one image."""
        return (self.in_channels, self.input_size, self.input_width or self.input_size)


INFOS = {
    "cifar10": DatasetInfo("cifar10", 10, 3, 32, CIFAR_MEAN, CIFAR_STD, True),
    "fashion-mnist": DatasetInfo("fashion-mnist", 10, 1, 28, (0.2860,), (0.3530,), False),
    "mnist": DatasetInfo("mnist", 10, 1, 28, (0.1307,), (0.3081,), False),
    "digits": DatasetInfo("digits", 10, 1, 8, (0.3051,), (0.3765,), False),
    "synthetic": DatasetInfo("synthetic", 4, 3, 8, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), False),
}


@dataclass(frozen=True)
class ImageDataset:
    """Images as uint8 ``(N, C, H, W)`` (or float32 in [0, 1]: a caller's images that are not 8-bit), labels as int64
    ``(N,)``; ``source`` says exactly what was read."""

    info: DatasetInfo
    split: str
    images: Tensor
    labels: Tensor
    source: str

    def __post_init__(self) -> None:
        # plain NCHW strides: a one-channel tensor with channels-last strides (numpy's x[:, None] gives them) is also
        # "contiguous", and a network fed it runs its convolutions channels-last, whatever the training mode says
        if self.images.ndim == 4 and self.images.stride() != torch.empty(self.images.shape, device="meta").stride():
            object.__setattr__(self, "images", self.images.clone(memory_format=torch.contiguous_format))

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def float_images(self, index: Tensor | slice | None = None) -> Tensor:
        """Pixels in [0, 1] as float32 (a caller's float images, which are not 8-bit, as they were given)."""
        images = self.images if index is None else self.images[index]
        return images.float().clone() if images.is_floating_point() else images.float().div_(255)

    def subset(self, n: int | None, seed: int) -> "ImageDataset":
        """A fixed, seeded subset of ``n`` examples (all when ``n`` is None or at least the size)."""
        return self.select(subset_indices(len(self), n, seed).to(self.images.device))

    def select(self, index: Tensor) -> "ImageDataset":
        return ImageDataset(self.info, self.split, self.images[index], self.labels[index], self.source)

    def to(self, device: torch.device | str) -> "ImageDataset":
        """The same data held on ``device`` (uint8 images: a quarter of the float size)."""
        return ImageDataset(self.info, self.split, self.images.to(device), self.labels.to(device), self.source)

    def content_sha256(self) -> str:
        """sha256 of the exact pixels and labels: what identifies the data in every result cell."""
        kind = f":{self.images.dtype}" if self.images.is_floating_point() else ""  # 8-bit data: as it always was
        h = hashlib.sha256(f"{self.info.name}:{tuple(self.images.shape)}:{tuple(self.labels.shape)}{kind}".encode())
        h.update(self.images.cpu().contiguous().numpy().tobytes())
        h.update(self.labels.cpu().contiguous().numpy().tobytes())
        return h.hexdigest()


def subset_indices(size: int, n: int | None, seed: int) -> Tensor:
    """Sorted indices of a seeded random subset; the same for every model, run and machine."""
    if n is None or n >= size:
        return torch.arange(size)
    if n < 1:
        raise UserError(f"a subset needs at least one example, got n={n}")
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(size, generator=g)[:n].sort().values


def dataset_info(name: str) -> DatasetInfo:
    if name not in INFOS:
        raise UserError(unknown("dataset", name, DATASETS))
    return INFOS[name]


def load_dataset(
    name: str,
    split: str,
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
    cache_dir: str | os.PathLike | None = None,
) -> ImageDataset:
    """Load a dataset split.

    ``cifar10``: torchvision's format or an image-folder tree (``train/<class>/*``) under ``data_dir``;
    downloads only with ``download=True``. ``fashion-mnist`` / ``mnist``: four IDX files (gz or not) in
    ``data_dir``, torchvision's layout, or (Fashion-MNIST) Debian's ``/usr/share/datasets/fashion-mnist``.
    ``digits``: scikit-learn's bundled 8x8 digits, split 80/20 deterministically (no download, ever).
    ``synthetic``: a tiny generated set for unit tests, not a benchmark.
    """
    info = dataset_info(name)
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    if name == "digits":
        return _digits(info, split)
    if name == "synthetic":
        return _synthetic(info, split)
    if name == "cifar10":
        return _cifar10(info, split, data_dir, download, cache_dir)
    return _idx_dataset(info, split, data_dir, download)


# --- digits and synthetic ----------------------------------------------------------------------------------


def _digits(info: DatasetInfo, split: str) -> ImageDataset:
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise DataNotFoundError(
            "the digits dataset comes with scikit-learn: pip install 'robustbench-dc[digits]'"
        ) from exc

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    labels = bunch.target.astype(np.int64)
    # Deterministic stratified split: every fifth example of each class (in file order) is a test example.
    test = np.zeros(len(labels), dtype=bool)
    for c in range(10):
        idx = np.flatnonzero(labels == c)
        test[idx[::5]] = True
    keep = test if split == "test" else ~test
    return ImageDataset(
        info,
        split,
        torch.from_numpy(images[keep]),
        torch.from_numpy(labels[keep]),
        "scikit-learn digits (8x8, 1,797 images; every 5th image of each class is test)",
    )


def _synthetic(info: DatasetInfo, split: str) -> ImageDataset:
    """Four classes of 8x8 colour images: a bright quadrant per class, plus noise. Learnable in seconds."""
    g = torch.Generator().manual_seed(0 if split == "train" else 1)
    n = 256 if split == "train" else 128
    labels = torch.arange(n) % info.num_classes
    images = torch.rand(n, 3, 8, 8, generator=g) * 0.4
    for c in range(info.num_classes):
        r, q = divmod(c, 2)
        images[labels == c, :, r * 4 : r * 4 + 4, q * 4 : q * 4 + 4] += 0.5
    return ImageDataset(info, split, (images * 255).round().to(torch.uint8), labels, "synthetic (generated, for tests)")


# --- IDX (MNIST, Fashion-MNIST) ------------------------------------------------------------------------------

_IDX_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
        zero, dtype, ndim = struct.unpack(">HBB", data[:4])
        if zero != 0 or dtype != 0x08:
            raise ValueError("not an unsigned-byte IDX file")
        shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
        array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
        return array.reshape(shape)
    except (OSError, ValueError, struct.error, EOFError) as exc:
        raise UserError(f"{path}: cannot read this IDX file ({exc}); delete it and get the dataset again") from exc


def _find_idx(stem: str, dirs: list[Path]) -> Path | None:
    for d in dirs:
        for name in (stem, stem + ".gz"):
            if (d / name).is_file():
                return d / name
    return None


def _idx_dataset(info: DatasetInfo, split: str, data_dir, download: bool) -> ImageDataset:
    tv_name = {"fashion-mnist": "FashionMNIST", "mnist": "MNIST"}[info.name]
    dirs: list[Path] = []
    if data_dir is not None:
        d = Path(data_dir)
        dirs += [d, d / tv_name / "raw", d / info.name]
    if info.name == "fashion-mnist":
        dirs.append(FASHION_MNIST_SYSTEM_DIR)
    if download:
        if data_dir is None:
            raise UserError("--download needs --data-dir: where to put the files")
        import torchvision

        _download(
            lambda: getattr(torchvision.datasets, tv_name)(str(data_dir), train=split == "train", download=True),
            info.name,
            data_dir,
        )
    image_stem, label_stem = _IDX_STEMS[split]
    image_path, label_path = _find_idx(image_stem, dirs), _find_idx(label_stem, dirs)
    if image_path is None or label_path is None:
        looked = "\n  ".join(str(d) for d in dirs) or "(nowhere: no --data-dir given)"
        hint = (
            "install Debian's package: apt-get install -y dataset-fashion-mnist, or "
            if info.name == "fashion-mnist"
            else ""
        )
        raise DataNotFoundError(
            f"{info.name} ({split}) not found; looked for {image_stem}[.gz] and {label_stem}[.gz] in:\n  {looked}\nTo "
            f"get it: {hint}put the four IDX files in a directory and pass --data-dir DIR, or pass --data-dir DIR "
            "--download."
        )
    images, labels = _read_idx(image_path), _read_idx(label_path)
    if images.ndim != 3 or labels.shape[0] != images.shape[0]:
        raise UserError(f"{image_path}: {images.shape[0]} images but {labels.shape[0]} labels; the files do not match")
    return ImageDataset(
        info,
        split,
        torch.from_numpy(images.copy())[:, None],
        torch.from_numpy(labels.astype(np.int64)),
        f"{info.name} IDX files ({image_path.parent.name}/)",
    )


# --- CIFAR-10 ------------------------------------------------------------------------------------------------

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}


def _download(fetch, name: str, into) -> None:
    """torchvision's download, its network failures as one clear error."""
    try:
        fetch()
    except (RuntimeError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataNotFoundError(
            f"could not download {name} into {into} ({first}); check the network, or put the files there yourself and "
            "run again without --download"
        ) from exc


def _cifar10(info: DatasetInfo, split: str, data_dir, download: bool, cache_dir) -> ImageDataset:
    if data_dir is None:
        raise DataNotFoundError(
            "cifar10 needs --data-dir DIR: a directory holding torchvision's cifar-10-batches-py/, or an image tree "
            "DIR/train/<class>/*.png|jpg and DIR/test/<class>/...; add --download to fetch torchvision's copy"
        )
    root = Path(data_dir)
    batches = root / "cifar-10-batches-py"
    if download and not batches.is_dir():
        import torchvision

        _download(
            lambda: torchvision.datasets.CIFAR10(str(root), train=split == "train", download=True), info.name, root
        )
    if batches.is_dir():
        import torchvision

        try:
            ds = torchvision.datasets.CIFAR10(str(root), train=split == "train", download=False)
        except (RuntimeError, OSError, ValueError, EOFError) as exc:
            raise UserError(
                f"{batches}: cannot read torchvision's CIFAR-10 batches ({exc}); delete the directory and get it again"
            ) from exc
        images = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))
        return ImageDataset(
            info,
            split,
            images,
            torch.tensor(ds.targets, dtype=torch.int64),
            "CIFAR-10 (torchvision batches, cifar-10-batches-py/)",
        )
    folder = root / split
    if folder.is_dir():
        return _image_folder(info, split, folder, cache_dir)
    raise DataNotFoundError(
        f"cifar10 ({split}) not found: neither {batches} (torchvision's format) nor {folder} (an image tree "
        f"{folder}/<class>/*.png|jpg) exists. Pass the right --data-dir, or add --download to fetch torchvision's copy."
    )


def _default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "robustbench-dc"


def _folder_key(folder: Path, files: list[list[Path]]) -> str:
    """The folder keyed by content, not by names and sizes: a file replaced by another of the same size is a new
    dataset."""
    h = hashlib.sha256()
    for group in files:
        for p in group:
            h.update(f"{p.relative_to(folder)}\0".encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:24]


def _folder_source(folder: Path, first: Path | None) -> str:
    """What the reports say the data is: CIFAR-10, a JPEG copy where it is one (with its quality), and the folder's
    names, not this machine's paths."""
    label = "CIFAR-10"
    if first is not None and first.suffix.lower() in (".jpg", ".jpeg"):
        quality = _jpeg_quality(first)
        label += f" (JPEG q{quality} copy)" if quality else " (JPEG copy)"
    return f"{label}, image folder {folder.parent.name}/{folder.name}/"


def _decode_folder(info: DatasetInfo, files: list[list[Path]]) -> tuple[np.ndarray, np.ndarray]:
    """Every image as (N, C, H, W) uint8 and its class index, each file checked to decode and to have the shape."""
    from PIL import Image

    images = np.empty((sum(len(g) for g in files), info.in_channels, info.input_size, info.input_size), np.uint8)
    labels = np.empty(images.shape[0], np.int64)
    i = 0
    for c, group in enumerate(files):
        for p in group:
            try:
                with Image.open(p) as im:
                    arr = np.asarray(im.convert("RGB"))
            except (OSError, ValueError, SyntaxError) as exc:  # PIL's errors for truncated or corrupt files
                raise UserError(f"{p}: cannot decode this image ({exc}); replace or remove the file") from exc
            if arr.shape != (info.input_size, info.input_size, 3):
                raise UserError(f"{p}: image of shape {arr.shape}, expected {info.input_size}x{info.input_size} RGB")
            images[i] = arr.transpose(2, 0, 1)
            labels[i] = c
            i += 1
    return images, labels


def _image_folder(info: DatasetInfo, split: str, folder: Path, cache_dir) -> ImageDataset:
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir())
    if len(classes) != info.num_classes:
        raise UserError(
            f"{folder}: expected {info.num_classes} class directories, found {len(classes)}: {classes[:12]}"
        )
    files = [sorted(p for p in (folder / c).iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES) for c in classes]
    cache = Path(cache_dir) if cache_dir is not None else _default_cache_dir()
    cache_file = cache / f"imagefolder-{info.name}-{split}-{_folder_key(folder, files)}.npz"
    source = _folder_source(folder, files[0][0] if files and files[0] else None)
    if cache_file.is_file():
        try:
            with np.load(cache_file) as z:
                return ImageDataset(info, split, torch.from_numpy(z["images"]), torch.from_numpy(z["labels"]), source)
        except (OSError, ValueError, KeyError):
            log.warning("ignoring unreadable cache %s", cache_file)
    images, labels = _decode_folder(info, files)
    atomic_write(cache_file, lambda tmp: _save_npz(tmp, images=images, labels=labels))
    return ImageDataset(info, split, torch.from_numpy(images), torch.from_numpy(labels), source)


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    with open(path, "wb") as f:  # a file object: np.savez would append ".npz" to a name
        np.savez(f, **arrays)  # type: ignore[arg-type]  # numpy stubs type **kwds like allow_pickle


# Standard JPEG luminance quantisation table (ITU T.81 Annex K), in zig-zag-free natural order.
_STD_LUMA = [
    16,
    11,
    10,
    16,
    24,
    40,
    51,
    61,
    12,
    12,
    14,
    19,
    26,
    58,
    60,
    55,
    14,
    13,
    16,
    24,
    40,
    57,
    69,
    56,
    14,
    17,
    22,
    29,
    51,
    87,
    80,
    62,
    18,
    22,
    37,
    56,
    68,
    109,
    103,
    77,
    24,
    35,
    55,
    64,
    81,
    104,
    113,
    92,
    49,
    64,
    78,
    87,
    103,
    121,
    120,
    101,
    72,
    92,
    95,
    98,
    112,
    100,
    103,
    99,
]


def _jpeg_quality(path: Path) -> int | None:
    """The IJG quality whose scaled standard table matches the file's luminance table, if any does."""
    from PIL import Image

    with Image.open(path) as im:
        tables = getattr(im, "quantization", None) or {}
    if 0 not in tables:
        return None
    table = sorted(tables[0])
    for q in range(1, 101):
        scale = 5000 / q if q < 50 else 200 - 2 * q
        scaled = sorted(min(255, max(1, (v * scale + 50) // 100)) for v in _STD_LUMA)
        if scaled == table:
            return q
    return None
