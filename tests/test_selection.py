"""Object cleanup, preselection steps, cutflow rows and template merging."""

import awkward as ak
import numpy as np
import pytest

from kvv import histograms, selection
from kvv.config import PhotonCleanup, Preselection, TrackCleanup, load_config


def test_track_cleanup_applies_every_cut():
    # One track per reason to fail, plus one good track; theta from pz/pt.
    tracks = ak.Array(
        [
            [
                {"px": 1.0, "py": 0.0, "pz": 0.5, "dr": 0.01, "dz": 0.1},  # good
                {"px": 0.05, "py": 0.05, "pz": 0.0, "dr": 0.01, "dz": 0.1},  # pT 0.07 < 0.1
                {"px": 0.2, "py": 0.0, "pz": 2.0, "dr": 0.01, "dz": 0.1},  # theta 5.7 deg, outside the CDC
                {"px": 0.5, "py": 0.0, "pz": -0.5, "dr": 0.6, "dz": 0.1},  # |dr| > 0.5 cm
                {"px": 0.5, "py": 0.0, "pz": 0.0, "dr": 0.0, "dz": -3.5},  # |dz| > 3 cm
                {"px": 5.0, "py": 3.5, "pz": 1.0, "dr": 0.0, "dz": 0.0},  # E > 5.5 GeV
            ],
            [],
        ]
    )
    mask = selection.track_mask(tracks, TrackCleanup())
    assert mask.tolist() == [[True, False, False, False, False, False], []]


def test_photon_cleanup():
    photons = ak.Array([[{"E": 0.05, "theta": 1.0}, {"E": 0.2, "theta": 1.0}, {"E": 0.2, "theta": 0.1}, {"E": 6.0, "theta": 1.5}]])
    assert selection.photon_mask(photons, PhotonCleanup()).tolist() == [[False, True, False, False]]


def test_flattened_columns_keep_event_boundaries():
    tracks = ak.Array(
        [
            [{"px": 1.0, "py": 2.0, "pz": 3.0, "charge": 1, "dr": 0.1, "dz": 0.2, "nPXDHits": 2, "kaonID": 0.9, "pionID": 0.1}],
            [],
            [
                {"px": 4.0, "py": 5.0, "pz": 6.0, "charge": -1, "dr": 0.0, "dz": 0.0, "nPXDHits": 0, "kaonID": 0.1, "pionID": 0.9},
                {"px": 7.0, "py": 8.0, "pz": 9.0, "charge": 1, "dr": 0.0, "dz": 0.0, "nPXDHits": 1, "kaonID": 0.5, "pionID": 0.5},
            ],
        ]
    )
    cols = selection.track_columns(tracks)
    assert cols.offsets.tolist() == [0, 1, 1, 3]
    assert cols.px.tolist() == [1.0, 4.0, 7.0]
    assert cols.charge.dtype == np.int32 and cols.px.dtype == np.float64


def test_preselection_steps_are_cumulative_and_follow_the_config():
    columns = {
        "has_kaon": np.array([True, True, True, True, False]),
        "n_tracks": np.array([5, 3, 5, 5, 5]),
        "theta_miss": np.array([1.0, 1.0, 0.2, 1.0, 1.0]),
        "e_visible_cms": np.array([5.0, 5.0, 5.0, 3.0, 5.0]),
    }
    steps = selection.preselection_steps(columns, Preselection())
    assert [m.tolist() for m in steps.values()] == [
        [True, True, True, True, False],
        [True, False, True, True, False],
        [True, False, False, True, False],
        [True, False, False, False, False],
    ]


def test_cutflow_rows_and_interval_mask():
    w = np.array([0.5, 1.5, 2.0])
    assert selection.cutflow_row(np.array([True, False, True]), w).tolist() == [2.0, 2.5]
    cols = {"a": np.array([0.1, 0.5, 0.9]), "b": np.array([1.0, 2.0, 3.0])}
    assert selection.interval_mask(cols, {"a": (0.5, None), "b": (None, 3.0)}).tolist() == [False, True, False]
    with pytest.raises(KeyError, match="unknown column 'c'"):
        selection.interval_mask(cols, {"c": (0, 1)})


def test_templates_merge_samples_of_a_template_and_keep_the_last_edge():
    cfg = load_config()
    booked = histograms.book(cfg)
    sr = next(r for r in cfg.regions if r.name == "SR")
    h = booked["templates"]["SR"]
    cols = {"kaon_pt": np.array([1.0, 2.2, 3.0]), "bdt2": np.array([0.96, 1.0, 0.995])}
    histograms.fill_template(h, sr, "uubar", "nominal", cols, np.array([1.0, 2.0, 3.0]))
    histograms.fill_template(h, sr, "ccbar", "nominal", cols, np.array([10.0, 10.0, 10.0]))
    templates, observed = histograms.templates_for_fit(booked["templates"], cfg)
    assert observed == {}
    uubar = templates["SR"]["uubar"]["yields"].reshape(3, 3)
    assert uubar[0, 0] == 1.0 and uubar[1, 2] == 2.0 and uubar[2, 2] == 3.0  # BDT2 = 1.0 kept in the last bin
    assert templates["SR"]["uubar"]["sumw2"].sum() == pytest.approx(1 + 4 + 9)
    assert templates["SR"]["ccbar"]["yields"].sum() == pytest.approx(30.0)
    assert set(templates["CR2"]) == {"uubar", "ddbar", "ssbar", "ccbar", "taupair"}  # off-resonance MC only
