"""ROOT output in the kvv event format (``kvv.eventformat``), written with uproot.

The file is written under a temporary name in the target directory and renamed
at the end, so an interrupted job never leaves a file that looks complete.
uproot stamps TKeys/TDirectories with the wall-clock time and the file with a
random UUID; both are fixed here (UUID from the seed, time = FIXED_TIMESTAMP) so
that the same seed gives a byte-identical file.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import threading
import types
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import awkward as ak
import numpy as np
import uproot
from uproot.writing import _cascade, _cascadetree

from kvv import eventformat as ef

FIXED_TIMESTAMP = datetime.datetime(2026, 1, 1)  # written into every TKey / TDirectory
COMPRESSION = uproot.ZSTD(3)  # good ratio at > 300 MB/s decompression


class _ClockUsers:
    """Writers open now; uproot's clock is patched while there is at least one."""

    lock = threading.Lock()
    count = 0


class _FixedDatetime(datetime.datetime):
    @classmethod
    def now(cls, tz=None):  # same signature as datetime.now
        return FIXED_TIMESTAMP


@contextlib.contextmanager
def _fixed_clock() -> Iterator[None]:
    """Make uproot's writing modules see a constant ``datetime.now()`` (thread-safe refcount)."""
    fake = types.SimpleNamespace(datetime=_FixedDatetime)
    with _ClockUsers.lock:
        if _ClockUsers.count == 0:
            _cascade.datetime = fake
            _cascadetree.datetime = fake
        _ClockUsers.count += 1
    try:
        yield
    finally:
        with _ClockUsers.lock:
            _ClockUsers.count -= 1
            if _ClockUsers.count == 0:
                _cascade.datetime = datetime
                _cascadetree.datetime = datetime


def _counter_name(counted: str) -> str:
    return {c.prefix: c.counter for c in ef.COLLECTIONS}[counted]


def branch_types(mc: bool) -> dict:
    """uproot ``mktree`` type specification of the format (jagged collections as records)."""
    types_ = {b.name: np.dtype(b.dtype) for b in ef.EVENT_BRANCHES}
    if mc:
        types_.update({b.name: np.dtype(b.dtype) for b in ef.MC_BRANCHES})
    for coll in ef.COLLECTIONS:
        fields = [f for f in coll.fields if mc or not f.name.startswith("mc")]
        record = ak.types.RecordType(
            [ak.types.NumpyType(ak.types.numpytype.dtype_to_primitive(np.dtype(f.dtype))) for f in fields],
            [f.name for f in fields],
        )
        types_[coll.prefix] = ak.types.ArrayType(ak.types.ListType(record), 0)
    return types_


def chunk_arrays(event: dict[str, np.ndarray], collections: dict[str, tuple[np.ndarray, dict]], mc: bool) -> dict:
    """Arrays for one ``TTree.extend``: event branches plus one jagged record per collection."""
    out = {}
    for b in ef.EVENT_BRANCHES + (ef.MC_BRANCHES if mc else ()):
        out[b.name] = np.asarray(event[b.name], dtype=b.dtype)
    for coll in ef.COLLECTIONS:
        counts, fields = collections[coll.prefix]
        names = [f.name for f in coll.fields if mc or not f.name.startswith("mc")]
        record = ak.zip({name: fields[name] for name in names}, depth_limit=1)
        out[coll.prefix] = ak.unflatten(record, counts)
    return out


#: entries per basket: a file holds many baskets per branch, so that a chunk of a few thousand
#: events decompresses about its own part of each branch, not a whole writing chunk's
BASKET_ENTRIES = 10_000


def extend_in_baskets(tree: uproot.WritableTree, data: Mapping[str, np.ndarray | ak.Array]) -> None:
    """``tree.extend`` in baskets of at most :data:`BASKET_ENTRIES` entries."""
    n = len(next(iter(data.values())))
    for start in range(0, n, BASKET_ENTRIES):
        tree.extend({k: v[start : start + BASKET_ENTRIES] for k, v in data.items()})


class SampleWriter:
    """Context manager writing chunks to ``path`` via a temporary file, renamed on success."""

    def __init__(self, path: str | os.PathLike, *, mc: bool, seed: int):
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.incomplete")
        self.mc = mc
        self.seed = seed
        self._file: uproot.WritableDirectory | None = None
        self._tree: uproot.WritableTree | None = None
        self._clock = _fixed_clock()

    def __enter__(self) -> SampleWriter:
        self._clock.__enter__()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # deterministic UUIDs: a counter seeded by the sample seed
        counter = iter(range(1 << 62))
        seed = self.seed

        def uuid_function() -> uuid.UUID:
            return uuid.uuid5(uuid.NAMESPACE_OID, f"kvv-{seed}-{next(counter)}")

        file = uproot.recreate(self.tmp, compression=COMPRESSION, uuid_function=uuid_function)
        self._file = file
        self._tree = file.mktree(ef.TREE_NAME, branch_types(self.mc), counter_name=_counter_name)
        return self

    def _open_file(self) -> uproot.WritableDirectory:
        if self._file is None:
            raise RuntimeError(f"{self.path}: SampleWriter is written to outside its with block")
        return self._file

    def extend(self, arrays: dict) -> None:
        if self._tree is None:
            raise RuntimeError(f"{self.path}: SampleWriter is written to outside its with block")
        extend_in_baskets(self._tree, arrays)

    def write_metadata(self, metadata: dict) -> None:
        self._open_file()[ef.METADATA_KEY] = json.dumps(metadata, sort_keys=True)

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self._open_file().close()
            if exc_type is None:
                os.replace(self.tmp, self.path)
            else:
                self.tmp.unlink(missing_ok=True)
        finally:
            self._clock.__exit__(exc_type, exc, tb)


def read_metadata(path: str | os.PathLike) -> dict:
    """The JSON metadata stored in a kvv sample file."""
    with uproot.open(path) as f:
        return json.loads(str(f[ef.METADATA_KEY]))
