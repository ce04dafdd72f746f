"""Systematic variations: nominal limits, which events move, determinism and sizes."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import pytest
from pydantic import ValidationError

from kvv import systematics as sy
from kvv.config.systematics import nuisance_names, variation_names
from kvv.physics import randoms
from kvv.physics.columns import PhotonColumns, TrackColumns, changed_events, select_events
from kvv.physics.formfactors import fplus


@dataclass(frozen=True)
class FakeSample:
    name: str
    process: str
    template: str
    is_data: bool = False


SIGNAL = FakeSample("signal", "knunu", "signal")
CHARGED = FakeSample("charged", "charged", "charged")
MIXED = FakeSample("mixed", "mixed", "mixed")
UUBAR = FakeSample("uubar", "uubar", "uubar")
DATA = FakeSample("data", "uubar", "data", is_data=True)

N_EVENTS = 4000


def make_tracks(n_events: int = N_EVENTS, seed: int = 1) -> tuple[TrackColumns, np.ndarray]:
    """Random cleaned tracks (0-12 per event) and their event numbers."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 13, n_events)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    n = int(offsets[-1])
    tracks = TrackColumns(
        offsets=offsets,
        px=rng.normal(0, 1, n),
        py=rng.normal(0, 1, n),
        pz=rng.normal(0.5, 1, n),
        charge=rng.choice([-1, 1], n).astype(np.int32),
        dr=rng.normal(0, 0.1, n),
        dz=rng.normal(0, 0.5, n),
        n_pxd_hits=rng.integers(0, 3, n).astype(np.int32),
        kaon_id=rng.random(n),
        pion_id=rng.random(n),
    )
    return tracks, 1000 + 7 * np.arange(n_events, dtype=np.int64)


def make_photons(n_events: int = N_EVENTS, seed: int = 2) -> tuple[PhotonColumns, np.ndarray]:
    """Random photons and their mcPDG (about a third beam background, 0)."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 8, n_events)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    n = int(offsets[-1])
    photons = PhotonColumns(offsets=offsets, energy=rng.uniform(0.1, 3.0, n), theta=rng.uniform(0.3, 2.6, n), phi=rng.uniform(-3, 3, n))
    return photons, rng.choice([0, 22, 22, 111], n)


def assert_columns_equal(a, b) -> None:
    for f in fields(a):
        np.testing.assert_array_equal(getattr(a, f.name), getattr(b, f.name), err_msg=f.name)


def event_columns(n: int = N_EVENTS, seed: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "mcB1Mode": rng.integers(0, 49, n).astype(np.int32),
        "mcB2Mode": rng.integers(0, 49, n).astype(np.int32),
        "mcq2": rng.uniform(0.0, 22.0, n).astype(np.float32),
        "kaon_p_lab": rng.uniform(0.0, 4.0, n),
        "kaon_cos_theta_lab": rng.uniform(-1.0, 1.0, n),
        "kaon_mc_pdg": rng.choice([321, -321, 211, 0], n),
        "kaon_kaon_id": rng.random(n),
    }


def full_config(size: float = 1.0) -> sy.SystematicsConfig:
    """Every kind of variation; ``size`` scales all their sizes (0: no-op variations)."""
    return sy.SystematicsConfig(
        kaon_pid=[sy.KaonPIDVariation(scale=size)],
        branching_fraction=[sy.BranchingFractionVariation(name="bf_d0pi", parent="B+", modes=["anti-D0 pi+", 12], uncertainty=0.1 * size)],
        form_factor=[sy.FormFactorVariation(uncertainties={"r1": 0.02 * size, "r2": 0.02 * size})],
        normalisation=[sy.NormalisationVariation(name="nBB", size=0.015 * size, templates=["signal", "charged"])],
        tracking_efficiency=[sy.TrackingEfficiencyVariation(fraction=0.05 * size, seed=3)],
        photon_energy_scale=[sy.PhotonEnergyScaleVariation(size=0.01 * size)],
        photon_energy_resolution=[sy.PhotonEnergyResolutionVariation(size=0.05 * size)],
        beam_background_photon_scale=[sy.BeamBackgroundPhotonScaleVariation(size=0.1 * size)],
        momentum_scale=[sy.MomentumScaleVariation(size=0.001 * size)],
    )


# ---------------------------------------------------------------- configuration and names


def test_names_and_groups_cover_every_nuisance():
    cfg = full_config()
    nuisances = nuisance_names(cfg)
    assert len(nuisances) == len(set(nuisances))
    assert variation_names(cfg) == [f"{n}_{d}" for n in nuisances for d in ("up", "down")]
    grouped = [n for names in sy.groups(cfg).values() for n in names]
    assert sorted(grouped) == sorted(nuisances)
    assert "tracking_efficiency" in sy.groups(cfg)["detector"]
    assert "form_factor_r1" in sy.groups(cfg)["physics modelling"]
    assert sy.groups(cfg)["normalisations"] == ["nBB"]


def test_config_rejects_unknown_keys_duplicates_and_unknown_decays():
    with pytest.raises(ValidationError):
        sy.SystematicsConfig.model_validate({"momentum_scale": [{"size": 0.1, "sise": 1}]})
    with pytest.raises(ValidationError, match="duplicate"):
        sy.SystematicsConfig(momentum_scale=[sy.MomentumScaleVariation(size=0.1)] * 2)
    with pytest.raises(ValidationError, match="not in the decay table"):
        sy.BranchingFractionVariation(name="x", parent="B+", modes=["D0 pi+"], uncertainty=0.1)
    with pytest.raises(ValidationError, match="no mode 99"):
        sy.BranchingFractionVariation(name="x", parent="B0", modes=[99], uncertainty=0.1)
    with pytest.raises(ValidationError, match="shape"):
        sy.KaonPIDTable(values=[[1.0]])


def test_decay_names_resolve_to_mode_indices():
    assert sy.resolve_modes("B+", ("anti-D0 pi+", "K+ nu_e anti-nu_e", 3)) == (10, 47, 3)


def test_config_round_trips_through_yaml_form():
    cfg = full_config()
    assert sy.SystematicsConfig.model_validate(cfg.model_dump(mode="json")) == cfg


# ---------------------------------------------------------------- weight variations


@pytest.mark.parametrize("sample", [SIGNAL, CHARGED, MIXED, UUBAR, DATA])
def test_zero_size_weight_variations_are_exactly_one(sample):
    cols = event_columns()
    out = sy.weight_variations(full_config(0.0), cols, sample)
    weight_names = [n for n in variation_names(full_config(0.0)) if not n.startswith(("tracking", "photon", "beam", "momentum"))]
    assert sorted(out) == sorted(weight_names)
    for name, w in out.items():
        assert w.shape == (N_EVENTS,)
        assert np.all(w == 1.0), name


def test_data_gets_no_weight_variation():
    out = sy.weight_variations(full_config(), event_columns(), DATA)
    assert all(np.all(w == 1.0) for w in out.values())


def test_branching_fraction_moves_only_events_with_listed_modes():
    cfg = sy.SystematicsConfig(
        branching_fraction=[sy.BranchingFractionVariation(name="bf", parent="B+", modes=["anti-D0 pi+", 12], uncertainty=0.2)]
    )
    cols = event_columns()
    out = sy.weight_variations(cfg, cols, CHARGED)
    n_listed = np.isin(cols["mcB1Mode"], [10, 12]).astype(int) + np.isin(cols["mcB2Mode"], [10, 12])
    assert set(np.unique(n_listed)) == {0, 1, 2}
    np.testing.assert_allclose(out["bf_up"], 1.2**n_listed)
    np.testing.assert_allclose(out["bf_down"], 0.8**n_listed)
    # the same mode indices of B0 are other decays: a mixed sample is untouched
    assert np.all(sy.weight_variations(cfg, cols, MIXED)["bf_up"] == 1.0)


def test_form_factor_moves_only_signal_and_keeps_its_rate():
    cfg = sy.SystematicsConfig(form_factor=[sy.FormFactorVariation()])
    cols = event_columns()
    signal_mode = 47
    is_signal = (cols["mcB1Mode"] == signal_mode) | (cols["mcB2Mode"] == signal_mode)
    out = sy.weight_variations(cfg, cols, SIGNAL)
    for name, w in out.items():
        assert np.all(w[~is_signal] == 1.0), name
        assert np.all(w[is_signal] != 1.0), name
    # background processes never carry the signal weight
    assert all(np.all(w == 1.0) for w in sy.weight_variations(cfg, cols, MIXED).values())
    # shape only: the SM-distributed rate is unchanged
    q2 = np.linspace(0.0, (sy.B_PLUS_MASS - sy.K_PLUS_MASS) ** 2, 20001)
    density = sy._rate_density(q2, {})
    for params in ({"r1": sy.BZ_R1 * 1.12}, {"r2": sy.BZ_R2 * 0.88}):
        w = sy.form_factor_weight(q2, params)
        assert np.trapezoid(density * w, q2) / np.trapezoid(density, q2) == pytest.approx(1.0, rel=1e-9)
        assert np.ptp(w) > 0.01


def test_fplus_is_ball_zwicky_on_scalars_and_arrays():
    # hep-ph/0406232, Table 1: r1 = 0.162, r2 = 0.173, m1 = 5.41 GeV
    q2 = np.array([0.0, 5.0, 15.0, 22.0])
    x = 1.0 - q2 / 5.41**2
    paper = 0.162 / x + 0.173 / x**2
    np.testing.assert_allclose(fplus.py_func(q2), paper, rtol=1e-12)
    np.testing.assert_allclose([fplus(float(v)) for v in q2], paper, rtol=1e-12)


def test_normalisation_scales_listed_templates_only():
    cfg = sy.SystematicsConfig(normalisation=[sy.NormalisationVariation(name="nBB", size=0.015, templates=["charged"])])
    cols = event_columns()
    assert np.all(sy.weight_variations(cfg, cols, CHARGED)["nBB_up"] == 1.015)
    assert np.all(sy.weight_variations(cfg, cols, CHARGED)["nBB_down"] == 0.985)
    assert np.all(sy.weight_variations(cfg, cols, UUBAR)["nBB_up"] == 1.0)


def test_kaon_pid_components_reproduce_the_covariance():
    rng = np.random.default_rng(5)
    a = rng.normal(size=(25, 25)) * 0.01
    for table in (sy.KaonPIDTable(), sy.KaonPIDTable(covariance=(a @ a.T).tolist())):
        components = sy.kaon_pid_components(table)
        cov = table.covariance_matrix()
        np.testing.assert_allclose(np.einsum("ki,kj->ij", components, components), cov, atol=1e-15)
        # independent: components are orthogonal
        gram = components @ components.T
        np.testing.assert_allclose(gram - np.diag(np.diag(gram)), 0.0, atol=1e-15)


def test_kaon_pid_moves_only_true_kaons_passing_the_cut():
    v = sy.KaonPIDVariation(table=sy.KaonPIDTable(values=np.full((5, 5), 0.95).tolist()))
    cfg = sy.SystematicsConfig(kaon_pid=[v])
    cols = event_columns()
    out = sy.weight_variations(cfg, cols, SIGNAL)
    inside = sy.kaon_pid_bins(v.table, cols["kaon_p_lab"], cols["kaon_cos_theta_lab"]) >= 0
    applies = (np.abs(cols["kaon_mc_pdg"]) == 321) & (cols["kaon_kaon_id"] > 0.9) & inside
    assert applies.sum() > 50
    moved = np.zeros(N_EVENTS, dtype=bool)
    for w in out.values():
        assert np.all(w[~applies] == 1.0)
        moved |= w != 1.0
    assert np.all(moved[applies])
    nominal = sy.nominal_weights(cfg, cols, SIGNAL)
    np.testing.assert_array_equal(nominal, np.where(applies, 0.95, 1.0))
    # first component up: nominal * factor == value + component in the event's bin
    bins = sy.kaon_pid_bins(v.table, cols["kaon_p_lab"], cols["kaon_cos_theta_lab"])[applies]
    c0 = sy.kaon_pid_components(v.table)[0]
    np.testing.assert_allclose((nominal * out["kaon_pid_ev0_up"])[applies], 0.95 + c0[bins])


def test_kaon_pid_inputs_from_tracks():
    tracks, _ = make_tracks(50)
    counts = np.diff(tracks.offsets)
    kaon_index = np.where(counts > 0, 0, -1)
    pdg = np.arange(len(tracks.px))
    cols = sy.kaon_pid_inputs(tracks, kaon_index, pdg)
    first = tracks.offsets[:-1][counts > 0]
    p = np.sqrt(tracks.px**2 + tracks.py**2 + tracks.pz**2)
    np.testing.assert_allclose(cols["kaon_p_lab"][counts > 0], p[first])
    np.testing.assert_allclose(cols["kaon_cos_theta_lab"][counts > 0], tracks.pz[first] / p[first])
    np.testing.assert_array_equal(cols["kaon_mc_pdg"][counts > 0], pdg[first])
    assert np.all(cols["kaon_p_lab"][counts == 0] == 0.0)


# ---------------------------------------------------------------- object variations


def test_zero_size_object_variations_return_the_input():
    tracks, events = make_tracks()
    photons, pdg = make_photons()
    for shift in sy.object_shifts(full_config(0.0)):
        new_tracks, new_photons = sy.vary_objects(shift, tracks, photons, events, pdg)
        assert_columns_equal(new_tracks, tracks)
        assert_columns_equal(new_photons, photons)


def test_one_sided_variations_are_mirrored():
    cfg = full_config()
    run = {s.name for s in sy.object_shifts(cfg)}
    missing = sy.mirrored(cfg)
    assert missing == {"tracking_efficiency_up": "tracking_efficiency_down", "photon_energy_resolution_down": "photon_energy_resolution_up"}
    object_names = {f"{v.name}_{d}" for v in cfg.object_variations for d in ("up", "down")}
    assert run | set(missing) == object_names and not run & set(missing)
    np.testing.assert_array_equal(sy.mirror(np.array([10.0, 1.0]), np.array([9.0, 3.0])), [11.0, 0.0])


def _tracking(fraction: float, seed: int) -> sy.ObjectShift:
    return sy.ObjectShift("tracking_efficiency_down", sy.TrackingEfficiencyVariation(fraction=fraction, seed=seed), "down")


def test_tracking_efficiency_drops_the_configured_fraction():
    tracks, events = make_tracks()
    photons, pdg = make_photons()
    fraction = 0.05
    new, new_photons = sy.vary_objects(_tracking(fraction, 1), tracks, photons, events, pdg)
    n = len(tracks.px)
    dropped = n - len(new.px)
    assert abs(dropped - fraction * n) < 4 * np.sqrt(n * fraction * (1 - fraction))
    assert new_photons is photons
    keep = sy.track_keep_mask(_tracking(fraction, 1).variation, tracks, events)
    # offsets rebuilt: each event keeps its own surviving tracks, in order
    for i in range(0, N_EVENTS, 97):
        lo, hi = tracks.offsets[i], tracks.offsets[i + 1]
        np.testing.assert_array_equal(new.px[new.offsets[i] : new.offsets[i + 1]], tracks.px[lo:hi][keep[lo:hi]])
    np.testing.assert_array_equal(new.kaon_id, tracks.kaon_id[keep])


def test_tracking_efficiency_is_reproducible_and_chunking_independent():
    tracks, events = make_tracks()
    photons, pdg = make_photons()
    shift = _tracking(0.1, 7)
    whole, _ = sy.vary_objects(shift, tracks, photons, events, pdg)
    again, _ = sy.vary_objects(shift, tracks, photons, events, pdg)
    assert_columns_equal(whole, again)
    other_seed, _ = sy.vary_objects(_tracking(0.1, 8), tracks, photons, events, pdg)
    assert len(other_seed.px) != len(whole.px) or not np.array_equal(other_seed.px, whole.px)

    split = 1234
    parts = []
    for lo, hi in ((0, split), (split, N_EVENTS)):
        o = tracks.offsets
        chunk = TrackColumns(
            offsets=o[lo : hi + 1] - o[lo],
            **{f: getattr(tracks, f)[o[lo] : o[hi]] for f in sy.TRACK_FIELDS},
        )
        parts.append(sy.vary_objects(shift, chunk, photons, events[lo:hi], pdg)[0])
    np.testing.assert_array_equal(np.concatenate([p.px for p in parts]), whole.px)
    counts = np.concatenate([np.diff(p.offsets) for p in parts])
    np.testing.assert_array_equal(counts, np.diff(whole.offsets))


def test_hash_uniforms_are_uniform_and_independent_of_salt():
    events = np.repeat(np.arange(20000), 3)
    index = np.tile(np.arange(3), 20000)
    u = randoms.hash_uniform(events, index, 0, "a")
    assert np.all((u >= 0) & (u < 1))
    hist, _ = np.histogram(u, bins=10, range=(0, 1))
    assert np.all(np.abs(hist - len(u) / 10) < 5 * np.sqrt(len(u) / 10))
    assert abs(np.corrcoef(u, randoms.hash_uniform(events, index, 0, "b"))[0, 1]) < 0.02
    z = randoms.hash_normal(events, index, 0, "a")
    assert abs(z.mean()) < 0.02 and abs(z.std() - 1.0) < 0.02


def test_photon_energy_scale_and_resolution_as_documented():
    tracks, events = make_tracks()
    photons, pdg = make_photons()
    up = sy.ObjectShift("s_up", sy.PhotonEnergyScaleVariation(name="s", size=0.02), "up")
    down = sy.ObjectShift("s_down", sy.PhotonEnergyScaleVariation(name="s", size=0.02), "down")
    np.testing.assert_allclose(sy.vary_objects(up, tracks, photons, events, pdg)[1].energy, photons.energy * 1.02)
    np.testing.assert_allclose(sy.vary_objects(down, tracks, photons, events, pdg)[1].energy, photons.energy * 0.98)

    smear = sy.ObjectShift("r_up", sy.PhotonEnergyResolutionVariation(name="r", size=0.05, seed=2), "up")
    new_tracks, smeared = sy.vary_objects(smear, tracks, photons, events, pdg)
    ratio = smeared.energy / photons.energy - 1.0
    assert abs(ratio.mean()) < 4 * 0.05 / np.sqrt(len(ratio))
    assert ratio.std() == pytest.approx(0.05, rel=0.03)
    np.testing.assert_array_equal(smeared.offsets, photons.offsets)
    np.testing.assert_array_equal(smeared.theta, photons.theta)
    assert new_tracks is tracks
    np.testing.assert_array_equal(sy.vary_objects(smear, tracks, photons, events, pdg)[1].energy, smeared.energy)


def test_beam_background_scale_touches_only_unmatched_photons():
    tracks, events = make_tracks()
    photons, pdg = make_photons()
    shift = sy.ObjectShift("bkg_up", sy.BeamBackgroundPhotonScaleVariation(name="bkg", size=0.1), "up")
    new = sy.vary_objects(shift, tracks, photons, events, pdg)[1]
    background = pdg == 0
    np.testing.assert_allclose(new.energy[background], photons.energy[background] * 1.1)
    np.testing.assert_array_equal(new.energy[~background], photons.energy[~background])
    with pytest.raises(ValueError, match="truth"):
        sy.vary_objects(shift, tracks, photons, events, None)


def test_momentum_scale_scales_all_track_momenta():
    tracks, events = make_tracks()
    photons, pdg = make_photons()
    shift = sy.ObjectShift("m_down", sy.MomentumScaleVariation(name="m", size=0.001), "down")
    new, new_photons = sy.vary_objects(shift, tracks, photons, events, pdg)
    for f in ("px", "py", "pz"):
        np.testing.assert_allclose(getattr(new, f), getattr(tracks, f) * 0.999)
    np.testing.assert_array_equal(new.kaon_id, tracks.kaon_id)
    assert new_photons is photons


def _changed_by_hand(nominal, varied) -> np.ndarray:
    """Event by event: a different number of objects, or any different value."""
    out = []
    for i in range(nominal.n_events):
        a = [getattr(nominal, f.name)[nominal.offsets[i] : nominal.offsets[i + 1]] for f in fields(nominal) if f.name != "offsets"]
        b = [getattr(varied, f.name)[varied.offsets[i] : varied.offsets[i + 1]] for f in fields(varied) if f.name != "offsets"]
        out.append(any(len(x) != len(y) or np.any(x != y) for x, y in zip(a, b, strict=True)))
    return np.array(out)


def test_changed_events_are_those_whose_objects_a_variation_moves():
    """The events a processor recomputes under an object variation: checked event by event, for every kind."""
    tracks, events = make_tracks()
    photons, pdg = make_photons()
    for shift in [*sy.object_shifts(full_config()), _tracking(0.05, 3)]:
        new_tracks, new_photons = sy.vary_objects(shift, tracks, photons, events, pdg)
        for nominal, varied in ((tracks, new_tracks), (photons, new_photons)):
            expected = _changed_by_hand(nominal, varied)
            np.testing.assert_array_equal(changed_events(nominal, varied), expected, err_msg=shift.name)
    shift = next(s for s in sy.object_shifts(full_config()) if s.name == "beam_background_photon_scale_up")
    beam_background = sy.vary_objects(shift, tracks, photons, events, pdg)[1]
    changed = changed_events(photons, beam_background)
    assert 0 < changed.sum() < (np.diff(photons.offsets) > 0).sum()  # events without beam-background photons stay


def test_select_events_keeps_the_marked_events_with_their_objects():
    tracks, _ = make_tracks(n_events=50)
    marked = np.random.default_rng(5).random(50) < 0.4
    picked = select_events(tracks, marked)
    assert picked.n_events == marked.sum()
    for k, i in enumerate(np.flatnonzero(marked)):
        lo, hi = tracks.offsets[i], tracks.offsets[i + 1]
        for f in fields(tracks):
            if f.name != "offsets":
                np.testing.assert_array_equal(
                    getattr(picked, f.name)[picked.offsets[k] : picked.offsets[k + 1]], getattr(tracks, f.name)[lo:hi]
                )
