"""Records of processed chunks, so that an interrupted run resumes where it stopped.

A coffea ``Runner`` given a :class:`ChunkRecords` stores each chunk's output as
it finishes, in ``<records>/<key>/<sample>/<file>_<start>-<stop>.pkl``, and on a
rerun loads the chunks it finds instead of processing them again. The key
hashes everything the outputs depend on besides the file (the analysis config,
the BDT models, the options of the run), and the file part includes the ROOT
file's UUID: a changed config, model or file never reuses an old record. The
merged result is the same whether a chunk was processed or loaded, because the
histograms' sums are exact (:class:`kvv.histograms.SumHistogram`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import pickle
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from coffea.processor import CheckpointerABC, ProcessorABC

from kvv.io.artefacts import atomic_path

log = logging.getLogger(__name__)

#: the counts every run's output carries under this key: chunks processed now and chunks loaded from records
CHUNKS = "chunks"


def records_key(*parts: str | bytes) -> str:
    """A short hash of the things a stage's chunk outputs depend on."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part if isinstance(part, bytes) else part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def files_digest(paths: Iterable[Path]) -> bytes:
    """The contents of files (e.g. the BDT models) as one digest."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.digest()


class ChunkRecords(CheckpointerABC):
    """Saves each chunk's output under ``directory/key`` and hands it back on a rerun of the same chunk."""

    def __init__(self, directory: Path, key: str):
        self.directory = Path(directory)
        self.key = key

    @property
    def path(self) -> Path:
        return self.directory / self.key

    def discard_others(self) -> None:
        """Remove the records of other keys: outputs of another config, other models or changed options."""
        if not self.directory.is_dir():
            return
        for other in self.directory.iterdir():
            if other.name != self.key:
                log.info("discarding chunk records of an earlier run with other settings: %s", other)
                shutil.rmtree(other, ignore_errors=True)

    def remove(self) -> None:
        """Remove this run's records (once its merged outputs are written), and the folders they leave empty."""
        shutil.rmtree(self.path, ignore_errors=True)
        for folder in (self.directory, self.directory.parent):
            with contextlib.suppress(OSError):  # not empty: records of another stage
                folder.rmdir()

    def _file(self, metadata: dict[str, Any]) -> Path:
        where = hashlib.sha256(f"{metadata['filename']}\0{metadata['treename']}".encode()).hexdigest()[:12]
        name = f"{metadata['fileuuid'] or 'no-uuid'}-{where}_{metadata['entrystart']}-{metadata['entrystop']}.pkl"
        return self.path / str(metadata["dataset"]) / name

    def load(self, metadata: dict[str, Any], processor_instance: ProcessorABC) -> Any:
        path = self._file(metadata)
        if not path.exists():
            return None
        try:
            out = pickle.loads(path.read_bytes())
        except Exception as exc:  # a record that cannot be read is processed again
            log.warning("chunk record %s unreadable (%s): processing the chunk again", path, exc)
            return None
        out["out"][CHUNKS] = {"resumed": 1}
        return out

    def save(self, output: Any, metadata: dict[str, Any], processor_instance: ProcessorABC) -> None:
        output["out"][CHUNKS] = {"processed": 1}
        path = self._file(metadata)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_bytes(pickle.dumps(output, protocol=pickle.HIGHEST_PROTOCOL))
