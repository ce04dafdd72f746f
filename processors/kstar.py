"""coffea processor of the B -> K* nu nubar search: one region per K* mode.

Same chain as :mod:`processors.knunu` (cleanup -> kernels -> preselection ->
BDT scores -> histograms, systematics included) with the K* candidate of
:mod:`kvv.kstar` in place of the signal kaon; only the per-event columns differ.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kvv import kstar
from kvv.config import AnalysisConfig
from kvv.physics.columns import BeamColumns, PhotonColumns, TrackColumns
from processors.knunu import KnunuProcessor


class KstarProcessor(KnunuProcessor):
    """Fills the per-mode templates, controls and cutflows of a K* analysis config.

    The K* requirements are the config's ``kstar:`` section (:class:`kvv.config.reconstruction.KstarCuts`).
    """

    candidate_step = "K* candidate"

    def __init__(
        self,
        cfg: AnalysisConfig,
        *,
        model_dir: Path | None = None,
        table_dir: Path | None = None,
        drop_nonfinite: bool = False,
    ):
        super().__init__(cfg, model_dir=model_dir, table_dir=table_dir, drop_nonfinite=drop_nonfinite)
        self.cuts = cfg.kstar

    def event_columns(self, beam: BeamColumns, tracks: TrackColumns, photons: PhotonColumns, truth: dict) -> dict[str, np.ndarray]:
        columns = kstar.reconstruct_kstar(tracks, photons, beam, self.cuts)
        daughters = columns.pop("daughters")  # (n, 6) indices: not a histogram or table column
        columns["has_kaon"] = columns["has_kstar"]  # the preselection's candidate step
        columns["kaon_index"] = daughters[:, 0]
        # 1 when every daughter has the right MC identity and mother; always 0 in data
        columns["kstar_truth_matched"] = kstar.truth_matched(
            columns["kstar_mode"], daughters,
            tracks.offsets, truth["track_mcPDG"], truth["track_mcMotherPDG"],
            photons.offsets, truth["photon_mcPDG"], truth["photon_mcMotherPDG"],
        ).astype(np.int64)  # fmt: skip
        return columns
