"""Where a run lives: a local directory or any ``pyarrow.fs`` URI, as Ray Train's ``storage_path``.

:func:`resolve` turns what the user gave (``--out DIR``, ``--storage URI``,
``Orchestrator(modules, "s3://bucket/run")``) into a run path:

* a plain path or a ``file://`` URI is a :class:`pathlib.Path`, and everything
  the run does there is what it always did: files written to a temporary name,
  fsynced and renamed, the lock held with ``fcntl.flock``;
* any other URI that ``pyarrow.fs.FileSystem.from_uri`` knows (``s3://bucket/run``,
  ``gs://``, ``hdfs://``, ...) is a :class:`RemotePath`: a path on that file
  system with the few ``pathlib`` methods the run's readers use (``/``,
  ``exists``, ``is_file``, ``is_dir``, ``iterdir``, ``glob``, ``read_bytes``,
  ``read_text``).  Writes go through :func:`put`: each file is one whole object
  under its final name (an object store's PUT is atomic: a reader sees the old
  object or the new one, never half of one).  :mod:`orchestrator.checkpoint`
  builds a round's files in a local temporary directory, byte for byte as a local
  run does, uploads them, and ``run.json``, which names every file with its
  SHA-256, is written after the files it names; readers trust only what it names.

S3 options ride in the URI's query, as pyarrow reads them, e.g.
``s3://bucket/run?endpoint_override=127.0.0.1:9000&scheme=http``; credentials
come from the usual AWS variables (``AWS_ACCESS_KEY_ID``, ...) or files.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.fs as pafs

from messages.errors import ConfigError, StorageError


class RemotePath:
    """A path on a ``pyarrow.fs`` file system other than the local one.

    Parameters
    ----------
    fs : pyarrow.fs.FileSystem
    path : str
        The path on ``fs`` (for S3 ``bucket/key/...``), without a trailing slash.
    scheme : str
        The URI's scheme (``s3``, ``gs``, ...), for messages.
    """

    def __init__(self, fs: pafs.FileSystem, path: str, scheme: str) -> None:
        self.fs = fs
        self.path = path.rstrip("/")
        self.scheme = scheme

    # -- path arithmetic ------------------------------------------------------
    def __truediv__(self, name: str | os.PathLike[str]) -> RemotePath:
        return RemotePath(self.fs, posixpath.join(self.path, os.fspath(name)), self.scheme)

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)

    @property
    def stem(self) -> str:
        return posixpath.splitext(self.name)[0]

    @property
    def parent(self) -> RemotePath:
        return RemotePath(self.fs, posixpath.dirname(self.path), self.scheme)

    def relative_to(self, other: RemotePath) -> str:
        """This path below ``other``, as a ``/``-separated string."""
        if not (self.path + "/").startswith(other.path + "/"):
            raise ValueError(f"{self} is not below {other}")
        return self.path[len(other.path) + 1 :]

    def resolve(self) -> RemotePath:
        """Itself: a remote path is already absolute."""
        return self

    def __str__(self) -> str:
        return f"{self.scheme}://{self.path}"

    def __repr__(self) -> str:
        return f"RemotePath({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemotePath) and (self.scheme, self.path) == (other.scheme, other.path)

    def __hash__(self) -> int:
        return hash((self.scheme, self.path))

    # -- asking the file system -------------------------------------------------
    def _type(self) -> pafs.FileType:
        return self.fs.get_file_info(self.path).type

    def exists(self) -> bool:
        return self._type() != pafs.FileType.NotFound

    def is_file(self) -> bool:
        return self._type() == pafs.FileType.File

    def is_dir(self) -> bool:
        return self._type() == pafs.FileType.Directory

    def iterdir(self) -> Iterator[RemotePath]:
        """The entries directly below this path, sorted by name (none when it does not exist)."""
        infos = self.fs.get_file_info(pafs.FileSelector(self.path, allow_not_found=True))
        for path in sorted(info.path.rstrip("/") for info in infos):
            yield RemotePath(self.fs, path, self.scheme)

    def walk(self) -> Iterator[RemotePath]:
        """Every file below this path, at any depth, sorted by path."""
        infos = self.fs.get_file_info(pafs.FileSelector(self.path, recursive=True, allow_not_found=True))
        for path in sorted(i.path for i in infos if i.type == pafs.FileType.File):
            yield RemotePath(self.fs, path, self.scheme)

    def glob(self, pattern: str) -> Iterator[RemotePath]:
        """The entries directly below this path whose name matches ``pattern`` (``fnmatch``)."""
        return (p for p in self.iterdir() if fnmatch.fnmatchcase(p.name, pattern))

    def read_bytes(self) -> bytes:
        with self.fs.open_input_stream(self.path) as stream:
            return stream.read()

    def read_text(self) -> str:
        return self.read_bytes().decode()

    def open_input_stream(self) -> pa.NativeFile:
        return self.fs.open_input_stream(self.path)

    def mkdir(self, parents: bool = True, exist_ok: bool = True) -> None:
        """Nothing on an object store (its directories are key prefixes); ``create_dir`` elsewhere."""
        if not _is_object_store(self.fs):
            self.fs.create_dir(self.path, recursive=True)

    def unlink(self, missing_ok: bool = False) -> None:
        try:
            self.fs.delete_file(self.path)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def remove_tree(self) -> None:
        """Delete this path and everything below it (nothing when it does not exist)."""
        if self.is_dir():
            self.fs.delete_dir(self.path)


#: Seconds a remote file system has to answer :func:`resolve`'s first question (pyarrow's own
#: retries can take minutes, e.g. for a GCS host that cannot be reached).
PROBE_SECONDS = 30.0

#: A run's directory: a local one, or one on a remote file system.
RunPath = Path | RemotePath


def _is_object_store(fs: pafs.FileSystem) -> bool:
    return fs.type_name in ("s3", "gcs")


def resolve(where: str | os.PathLike[str] | RemotePath, probe: bool = True) -> RunPath:
    """A run path from a local path or a ``pyarrow.fs`` URI.

    Parameters
    ----------
    where : str, path or RemotePath
        ``DIR``, ``file:///abs/DIR``, ``s3://bucket/run[?endpoint_override=...]``, ...
    probe : bool
        For a remote URI, check that its server answers and its bucket exists.

    Returns
    -------
    Path or RemotePath

    Raises
    ------
    ConfigError
        An unknown scheme, a URI pyarrow cannot read, a server that does not
        answer or a bucket that does not exist (one line naming the URI).
    """
    if isinstance(where, (Path, RemotePath)):
        return where
    text = os.fspath(where)
    if "://" not in text:
        return Path(text)
    scheme = text.split("://", 1)[0].lower()
    shown = _without_query(text)
    try:
        fs, path = pafs.FileSystem.from_uri(text)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError, OSError) as exc:
        raise ConfigError(
            f"storage {shown} should be a local path or a pyarrow.fs URI (file://, s3://, gs://, hdfs://), "
            f"got: {first_line(exc).replace(text, shown)}"
        ) from None
    if isinstance(fs, pafs.LocalFileSystem):
        return Path(path)
    remote = RemotePath(fs, path, scheme)
    if probe:
        _probe(remote, shown)
    return remote


def _probe(remote: RemotePath, shown: str) -> None:
    """Refuse a remote run path whose server does not answer or whose bucket is missing."""
    store = _is_object_store(remote.fs)
    top = remote.path.split("/", 1)[0]
    if store and "/" not in remote.path:
        raise ConfigError(f"storage {shown} should name a directory inside a bucket (s3://bucket/run), got a bucket")
    got: list[object] = []
    asking = threading.Thread(target=_ask, args=(remote.fs, top if store else remote.path, got), daemon=True)
    asking.start()
    asking.join(PROBE_SECONDS)
    if not got:
        raise ConfigError(f"storage {shown} should be reachable, got no answer within {PROBE_SECONDS:g} s")
    info = got[0]
    if isinstance(info, OSError):
        raise ConfigError(f"storage {shown} should be reachable, got: {first_line(info)}") from None
    assert isinstance(info, pafs.FileInfo)
    if store and info.type == pafs.FileType.NotFound:
        raise ConfigError(f"storage {shown} should name an existing bucket, got no bucket {top!r} there")


def _ask(fs: pafs.FileSystem, path: str, got: list[object]) -> None:
    """``fs.get_file_info(path)`` (or the OSError it raised) appended to ``got``."""
    try:
        got.append(fs.get_file_info(path))
    except OSError as exc:
        got.append(exc)


def _without_query(uri: str) -> str:
    """The URI without its query (which may carry options and keys) and without user:password@."""
    base = uri.split("?", 1)[0]
    scheme, _, rest = base.partition("://")
    host, slash, tail = rest.partition("/")
    return f"{scheme}://{host.rpartition('@')[2]}{slash}{tail}"


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (pyarrow's can run over several)."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def put(path: RemotePath, data: bytes) -> None:
    """Write ``data`` as the whole object ``path``: pyarrow's S3 stream makes the object visible only
    once complete (one PUT, or a multipart upload completed at close), so a reader never sees part of it.

    Raises
    ------
    StorageError
        The write failed (the object keeps its old content, if any).
    """
    try:
        with path.fs.open_output_stream(path.path) as sink:
            sink.write(data)
    except OSError as exc:
        raise StorageError(path, exc.errno, first_line(exc)) from None


def upload_file(local: Path, path: RemotePath) -> None:
    """Copy the local file ``local`` to the object ``path`` whole (see :func:`put`)."""
    put(path, local.read_bytes())


def replace_dir(local: Path, path: RemotePath) -> None:
    """Make the remote directory ``path`` hold the files of the local directory ``local``: its old objects
    are deleted, then each file is uploaded whole under its name (see :func:`put`).

    Raises
    ------
    StorageError
        A delete or an upload failed (naming the remote directory or file).
    """
    try:
        path.fs.delete_dir_contents(path.path, missing_dir_ok=True)
    except OSError as exc:
        raise StorageError(path, exc.errno, first_line(exc)) from None
    for file in sorted(local.iterdir()):
        upload_file(file, path / file.name)


def copy(source: RemotePath, target: RemotePath) -> None:
    """Copy the object ``source`` to ``target`` on the same file system (S3: a server-side copy, one whole object).

    Raises
    ------
    StorageError
        The copy failed (``target`` keeps its old content, if any).
    """
    try:
        source.fs.copy_file(source.path, target.path)
    except OSError as exc:
        raise StorageError(target, exc.errno, first_line(exc)) from None


def open_input(path: Path | RemotePath) -> pa.NativeFile | BinaryIO:
    """A binary stream reading the local or remote file ``path``."""
    return path.open_input_stream() if isinstance(path, RemotePath) else open(path, "rb")
