"""MNIST: download (standard library only), verify, cache, and build the tutorial's sequence.

The four gzipped IDX files are cached in ``<cache>/mnist/`` where ``<cache>`` is, first
found: the ``cache_dir`` argument, ``$SERKET_RAY_CACHE``, ``$XDG_CACHE_HOME/serket-ray``,
``~/.cache/serket-ray``.  Without network access, put the files there by hand (the
error message says where); they are checked against the SHA-256 sums below either way.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from messages.errors import DataError
from orchestrator.data import cyclic_order, read_idx

logger = logging.getLogger(__name__)


class MnistFile(NamedTuple):
    """One of MNIST's distributed files."""

    name: str
    size: int
    sha256: str
    md5: str


# The files as LeCun, Cortes and Burges distributed them (byte-identical on the mirrors
# below).  Sources of the digests: the MD5s are those of torchvision's
# ``torchvision.datasets.MNIST.resources``; the SHA-256 sums (and sizes) are the ones
# recorded independently by several public projects that verify these files (e.g. the
# guild.ai "mnist" package, torch.rb's MNIST dataset class, Haskell and Julia MNIST
# loaders), all agreeing.  They were not recomputed here (no network access when this was
# written); the MD5s are kept so that anyone can cross-check a download against torchvision.
MNIST_FILES: dict[str, MnistFile] = {
    f.name: f
    for f in (
        MnistFile(
            "train-images-idx3-ubyte.gz",
            9_912_422,
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        ),
        MnistFile(
            "train-labels-idx1-ubyte.gz",
            28_881,
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "d53e105ee54ea40749a09fcbcd1e9432",
        ),
        MnistFile(
            "t10k-images-idx3-ubyte.gz",
            1_648_877,
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "9fb629c4189551a2d022fa330f9573f3",
        ),
        MnistFile(
            "t10k-labels-idx1-ubyte.gz",
            4_542,
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
            "ec29112dd5afa0611ce80d1b7f02629c",
        ),
    )
}
SPLITS: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
#: Public mirrors, tried in order (yann.lecun.com no longer serves the files without a login).
MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",  # torchvision's
    "https://storage.googleapis.com/cvdf-datasets/mnist/",  # TensorFlow's
)
DEFAULT_MIRROR = MIRRORS[0]
CACHE_ENV = "SERKET_RAY_CACHE"
DEFAULT_TIMEOUT = 30.0
_CHUNK = 1 << 16


def default_cache_dir() -> Path:
    """``$SERKET_RAY_CACHE``, else ``$XDG_CACHE_HOME/serket-ray``, else ``~/.cache/serket-ray``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "serket-ray"


def mnist_dir(cache_dir: str | Path | None = None) -> Path:
    """The folder holding MNIST's files: ``<cache_dir or default_cache_dir()>/mnist``."""
    return (Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()) / "mnist"


def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _ChecksumMismatchError(Exception):
    def __init__(self, url: str, expected: str, got: str) -> None:
        super().__init__(url)
        self.url, self.expected, self.got = url, expected, got


def _download(url: str, dest: Path, sha256: str, timeout: float) -> None:
    """Stream ``url`` into a temporary file next to ``dest``; rename it to ``dest`` only if its SHA-256 matches."""
    request = urllib.request.Request(url, headers={"User-Agent": "serket-ray"})
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as response:
            while chunk := response.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        got = digest.hexdigest()
        if got != sha256:
            raise _ChecksumMismatchError(url, sha256, got)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        exc.close()
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return " ".join(str(exc).split()) or type(exc).__name__


def _expected_sha256(wanted: list[str], checksums: Mapping[str, str] | None) -> dict[str, str]:
    """Hex SHA-256 of each file asked: the one given in ``checksums``, else the official one."""
    expected: dict[str, str] = {}
    for name in wanted:
        if checksums is not None and name in checksums:
            expected[name] = checksums[name].lower()
        elif name in MNIST_FILES:
            expected[name] = MNIST_FILES[name].sha256
        else:
            raise DataError(
                f"MNIST file name should be one of {sorted(MNIST_FILES)} or have a checksum given, got {name!r}"
            )
    return expected


def _download_from_mirrors(bases: list[str], name: str, path: Path, sha256: str, timeout: float, hint: str) -> None:
    """Download ``name`` to ``path`` from the first mirror that serves it with the right SHA-256.

    Raises
    ------
    DataError
        Every mirror failed (the first failure and ``hint`` are named) or served another SHA-256.
    """
    failures: list[str] = []
    mismatch: _ChecksumMismatchError | None = None
    for base in bases:
        url = base.rstrip("/") + "/" + name
        logger.info("MNIST: downloading %s", url)
        try:
            _download(url, path, sha256, timeout)
            return
        except _ChecksumMismatchError as exc:
            logger.warning("MNIST: %s has SHA-256 %s, expected %s; discarded", url, exc.got, exc.expected)
            mismatch = exc
        except (OSError, ValueError, http.client.HTTPException) as exc:  # URLError, timeouts, bad URLs
            logger.info("MNIST: %s failed: %s", url, _reason(exc))
            failures.append(f"{url}: {_reason(exc)}")
    if mismatch is not None:
        raise DataError(
            f"MNIST file {name} from {mismatch.url} should have SHA-256 {mismatch.expected}, "
            f"got {mismatch.got}; the download was discarded"
        )
    raise DataError(f"MNIST could not be downloaded ({failures[0]}); without network access, {hint}")


def fetch_mnist(
    cache_dir: str | Path | None = None,
    base_url: str | Sequence[str] = MIRRORS,
    timeout: float = DEFAULT_TIMEOUT,
    *,
    names: Iterable[str] = tuple(MNIST_FILES),
    checksums: Mapping[str, str] | None = None,
    download: bool = True,
) -> dict[str, Path]:
    """Make MNIST's gzipped IDX files available in the cache, downloading the missing ones.

    A cached file is used when its SHA-256 matches (no request is made); a cached
    file that does not match is downloaded again.  A download goes to a temporary
    name in the cache folder and is renamed only once its SHA-256 matches, so the
    cache never holds a partial or wrong file.

    Parameters
    ----------
    cache_dir : str or Path, optional
        Cache root; the files go to ``<cache_dir>/mnist/``.  Default: :func:`default_cache_dir`.
    base_url : str or sequence of str
        Mirror(s) holding the files (``<base_url>/<name>``), tried in order.
    timeout : float
        Seconds to wait on the network, per connection attempt and per read.
    names : iterable of str
        Files to fetch (default: all four).
    checksums : mapping of str to str, optional
        Hex SHA-256 per file name, replacing the official ones (for tests and private copies).
    download : bool
        False: only use the cache (missing files raise the same error as being offline).

    Returns
    -------
    dict of str to Path
        File name -> cached path, for every name asked.

    Raises
    ------
    DataError
        A download failed on every mirror (the message says where to put the files by
        hand), or a downloaded file's SHA-256 differs from the expected one.
    """
    wanted = list(names)
    expected = _expected_sha256(wanted, checksums)
    bases = [base_url] if isinstance(base_url, str) else list(base_url)
    target = mnist_dir(cache_dir)
    paths: dict[str, Path] = {}
    for name in wanted:
        path = target / name
        paths[name] = path
        if path.is_file():
            if sha256_of(path) == expected[name]:
                logger.debug("MNIST: using cached %s", path)
                continue
            logger.warning("MNIST: cached %s has the wrong SHA-256; fetching it again", path)
            path.unlink()
        missing = [n for n in wanted if not (target / n).is_file()]
        hint = f"put {', '.join(missing)} (from {bases[0] if bases else DEFAULT_MIRROR}) in {target} by hand"
        if not download:
            raise DataError(f"MNIST file {name} should be in the cache, got none at {path} (downloads are off); {hint}")
        if not bases:
            raise DataError(f"MNIST needs at least one mirror URL to download {name}, got none; {hint}")
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataError(
                f"MNIST cache folder {target} should be writable, got: {_reason(exc)}; "
                f"choose another with --cache-dir or ${CACHE_ENV}"
            ) from None
        _download_from_mirrors(bases, name, path, expected[name], timeout, hint)
    return paths


def load_mnist(
    split: str = "train",
    cache_dir: str | Path | None = None,
    base_url: str | Sequence[str] = MIRRORS,
    timeout: float = DEFAULT_TIMEOUT,
    *,
    checksums: Mapping[str, str] | None = None,
    download: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """One split of MNIST, fetched with :func:`fetch_mnist` if needed.

    Parameters
    ----------
    split : {"train", "test"}
        Training (60000 images) or test (10000 images) files.
    cache_dir, base_url, timeout, checksums, download
        As :func:`fetch_mnist`.

    Returns
    -------
    images : numpy.ndarray, shape (N, 28, 28), uint8
        N = 60000 (train) or 10000 (test) for the official files.
    labels : numpy.ndarray, shape (N,), uint8
    """
    if split not in SPLITS:
        raise DataError(f"MNIST split should be one of {sorted(SPLITS)}, got {split!r}")
    image_name, label_name = SPLITS[split]
    paths = fetch_mnist(cache_dir, base_url, timeout, names=SPLITS[split], checksums=checksums, download=download)
    images, labels = read_idx(paths[image_name]), read_idx(paths[label_name])
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(
            f"MNIST files {paths[image_name]} and {paths[label_name]} should hold (N, H, W) images and (N,) labels, "
            f"got shapes {images.shape} and {labels.shape}"
        )
    return images, labels


def tutorial_mnist(
    cache_dir: str | Path | None = None,
    per_class: int = 300,
    base_url: str | Sequence[str] = MIRRORS,
    timeout: float = DEFAULT_TIMEOUT,
    *,
    checksums: Mapping[str, str] | None = None,
    download: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """The Serket tutorial's data: the first ``per_class`` training images of each digit,
    ordered 0,1,...,9,0,1,... (image ``i`` shows digit ``i % 10``).

    Parameters
    ----------
    cache_dir, base_url, timeout, checksums, download
        As :func:`fetch_mnist` (only the two training files are fetched).
    per_class : int
        Images per digit.

    Returns
    -------
    images : numpy.ndarray, shape (10 * per_class, 784), float64 in [0, 1]
        (3000, 784) by default; pixel / 255.
    labels : numpy.ndarray, shape (10 * per_class,), int64
    """
    images, labels = load_mnist("train", cache_dir, base_url, timeout, checksums=checksums, download=download)
    order = cyclic_order(labels, per_class)
    return images[order].reshape(len(order), -1) / 255.0, labels[order].astype(np.int64)
