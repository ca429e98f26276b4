"""The MNIST downloader against a real HTTP server on 127.0.0.1 serving IDX files made
from the tutorial's data (their checksums differ from the official ones, so the tests
pass their own)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import mnist_path

from messages.errors import DataError
from orchestrator.data import write_idx
from orchestrator.mnist import (
    CACHE_ENV,
    MIRRORS,
    MNIST_FILES,
    default_cache_dir,
    fetch_mnist,
    load_mnist,
    mnist_dir,
    tutorial_mnist,
)

NAMES = tuple(MNIST_FILES)


@pytest.fixture(scope="module")
def tutorial() -> tuple[np.ndarray, np.ndarray]:
    """The tutorial's (images uint8 (3000, 784), labels (3000,)), ordered 0,1,...,9,0,..."""
    path = mnist_path()
    if not path.exists():
        pytest.fail(f"the tutorial's data should be at {path} (set SERKET_RAY_MNIST_NPZ), got nothing there")
    with np.load(path) as d:
        return d["images"], d["labels"]


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, tutorial: tuple[np.ndarray, np.ndarray]
) -> tuple[Path, dict[str, str]]:
    """A folder with the four MNIST file names, and their SHA-256 sums.

    The "training set" holds the tutorial's 3000 images interleaved in another order
    (each digit's images keep their relative order) followed by 20 decoys (2 per digit),
    so that taking the first 300 of each digit and ordering them 0,1,...,9,0,...
    gives back exactly the tutorial's data.
    """
    images, labels = tutorial
    rng = np.random.default_rng(1)
    slots = rng.permutation(labels)  # a random sequence of digits with 300 of each
    train = np.empty((len(labels) + 20, 28, 28), np.uint8)
    train_labels = np.empty(len(labels) + 20, np.uint8)
    for digit in range(10):
        train[:-20][slots == digit] = images[labels == digit].reshape(-1, 28, 28)
    train_labels[:-20] = slots
    train[-20:] = 255 - train[:20]  # decoys: must never be picked
    train_labels[-20:] = np.repeat(np.arange(10), 2)
    folder = tmp_path_factory.mktemp("mirror")
    write_idx(folder / "train-images-idx3-ubyte.gz", train)
    write_idx(folder / "train-labels-idx1-ubyte.gz", train_labels)
    write_idx(folder / "t10k-images-idx3-ubyte.gz", images[:100].reshape(-1, 28, 28))
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", labels[:100].astype(np.uint8))
    sums = {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in NAMES}
    return folder, sums


class _Server:
    def __init__(self, folder: Path) -> None:
        self.requests: list[str] = []
        log = self.requests

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self) -> None:
                log.append(self.path)
                super().do_GET()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Handler, directory=str(folder))
        )
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server(served: tuple[Path, dict[str, str]]) -> Iterator[_Server]:
    srv = _Server(served[0])
    yield srv
    srv.close()


@pytest.fixture
def dead_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (a port just released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_then_cache(tmp_path: Path, served: tuple[Path, dict[str, str]], server: _Server) -> None:
    folder, sums = served
    paths = fetch_mnist(tmp_path, server.url, timeout=5, checksums=sums)
    assert sorted(paths) == sorted(NAMES)
    for name, path in paths.items():
        assert path == tmp_path / "mnist" / name
        assert path.read_bytes() == (folder / name).read_bytes()
    assert sorted(server.requests) == sorted("/" + n for n in NAMES)
    assert _leftovers(tmp_path / "mnist") == sorted(NAMES)  # no temporary files left

    again = fetch_mnist(tmp_path, server.url, timeout=5, checksums=sums)
    assert again == paths
    assert len(server.requests) == 4  # the second call made no request


def test_checksum_mismatch_is_refused_and_leaves_nothing(
    tmp_path: Path, served: tuple[Path, dict[str, str]], server: _Server
) -> None:
    sums = dict(served[1], **{"train-labels-idx1-ubyte.gz": "0" * 64})
    with pytest.raises(DataError) as info:
        fetch_mnist(tmp_path, server.url, timeout=5, names=["train-labels-idx1-ubyte.gz"], checksums=sums)
    message = str(info.value)
    assert "\n" not in message
    assert "train-labels-idx1-ubyte.gz" in message and "SHA-256" in message and "0" * 64 in message
    assert _leftovers(tmp_path / "mnist") == []


def test_official_checksums_refuse_other_files(tmp_path: Path, server: _Server) -> None:
    with pytest.raises(DataError, match="should have SHA-256 " + MNIST_FILES["t10k-labels-idx1-ubyte.gz"].sha256):
        fetch_mnist(tmp_path, server.url, timeout=5, names=["t10k-labels-idx1-ubyte.gz"])
    assert _leftovers(tmp_path / "mnist") == []


def test_server_down_gives_the_offline_message(
    tmp_path: Path, served: tuple[Path, dict[str, str]], dead_url: str
) -> None:
    with pytest.raises(DataError) as info:
        fetch_mnist(tmp_path, dead_url, timeout=2, checksums=served[1])
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("MNIST could not be downloaded (" + dead_url)
    assert f"in {tmp_path / 'mnist'} by hand" in message
    assert all(name in message for name in NAMES)
    assert _leftovers(tmp_path / "mnist") == []


def test_files_put_by_hand_are_used_offline(tmp_path: Path, served: tuple[Path, dict[str, str]], dead_url: str) -> None:
    folder, sums = served
    (tmp_path / "mnist").mkdir()
    for name in NAMES:
        (tmp_path / "mnist" / name).write_bytes((folder / name).read_bytes())
    images, labels = load_mnist("test", tmp_path, dead_url, timeout=2, checksums=sums, download=False)
    assert images.shape == (100, 28, 28) and labels.shape == (100,)


def test_next_mirror_after_a_failure(
    tmp_path: Path, served: tuple[Path, dict[str, str]], server: _Server, dead_url: str
) -> None:
    paths = fetch_mnist(
        tmp_path, [dead_url, server.url], timeout=2, names=["t10k-labels-idx1-ubyte.gz"], checksums=served[1]
    )
    assert paths["t10k-labels-idx1-ubyte.gz"].is_file()
    assert server.requests == ["/t10k-labels-idx1-ubyte.gz"]


def test_missing_file_on_mirror(tmp_path: Path, served: tuple[Path, dict[str, str]], server: _Server) -> None:
    with pytest.raises(DataError, match="HTTP 404"):
        fetch_mnist(
            tmp_path, server.url + "elsewhere/", timeout=5, names=["t10k-labels-idx1-ubyte.gz"], checksums=served[1]
        )
    assert _leftovers(tmp_path / "mnist") == []


def test_damaged_cache_is_fetched_again(tmp_path: Path, served: tuple[Path, dict[str, str]], server: _Server) -> None:
    folder, sums = served
    name = "t10k-labels-idx1-ubyte.gz"
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / name).write_bytes(b"half a file")
    path = fetch_mnist(tmp_path, server.url, timeout=5, names=[name], checksums=sums)[name]
    assert path.read_bytes() == (folder / name).read_bytes()
    assert server.requests == ["/" + name]


def test_no_download_without_cache(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="downloads are off.*by hand"):
        fetch_mnist(tmp_path, download=False)


def test_tutorial_order(
    tmp_path: Path, served: tuple[Path, dict[str, str]], server: _Server, tutorial: tuple[np.ndarray, np.ndarray]
) -> None:
    images, labels = tutorial_mnist(tmp_path, base_url=server.url, timeout=5, checksums=served[1])
    assert images.shape == (3000, 784) and images.dtype == np.float64
    assert images.min() >= 0.0 and images.max() <= 1.0
    np.testing.assert_array_equal(labels, np.tile(np.arange(10), 300))
    np.testing.assert_array_equal(images, tutorial[0] / 255.0)  # first 300 of each digit, no decoy
    assert sorted(server.requests) == ["/train-images-idx3-ubyte.gz", "/train-labels-idx1-ubyte.gz"]


def test_cache_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "env-cache"))
    assert default_cache_dir() == tmp_path / "env-cache"
    assert mnist_dir() == tmp_path / "env-cache" / "mnist"
    assert mnist_dir(tmp_path / "arg") == tmp_path / "arg" / "mnist"
    monkeypatch.delenv(CACHE_ENV)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert default_cache_dir() == Path.home() / ".cache" / "serket-ray"


def test_official_constants() -> None:
    assert sorted(MNIST_FILES) == sorted(
        [
            "train-images-idx3-ubyte.gz",
            "train-labels-idx1-ubyte.gz",
            "t10k-images-idx3-ubyte.gz",
            "t10k-labels-idx1-ubyte.gz",
        ]
    )
    for f in MNIST_FILES.values():
        assert len(f.sha256) == 64 and int(f.sha256, 16) >= 0
        assert len(f.md5) == 32 and int(f.md5, 16) >= 0
    assert all(url.startswith("https://") and url.endswith("/") for url in MIRRORS)
