"""Physics and I/O checks of kvv.simulate against known values (PDG, form factors, formulas)."""

from __future__ import annotations

import numpy as np
import pytest
import uproot
from particle import Particle

from kvv import eventformat as ef
from kvv.eventformat import Process
from kvv.physics.beams import SQRT_S_OFF_RESONANCE, Beams
from kvv.simulate import (
    cross_section,
    decay_table,
    four_momentum_balance,
    generate_events,
    generate_sample,
    read_metadata,
    simulate_detector,
)

BEAMS = Beams()
CHARGED_PDG = (11, 13, 211, 321, 2212)
N_EVENTS = {
    Process.CHARGED: 6000,
    Process.MIXED: 6000,
    Process.UUBAR: 4000,
    Process.DDBAR: 2000,
    Process.SSBAR: 2000,
    Process.CCBAR: 4000,
    Process.TAUPAIR: 4000,
    Process.KNUNU: 40000,
    Process.KSTAR0NUNU: 4000,
    Process.KSTARPNUNU: 2000,
    Process.JPSIK: 4000,
}


def mass(pdgid: int) -> float:
    return Particle.from_pdgid(pdgid).mass / 1000.0


@pytest.fixture(scope="module")
def events():
    """One small generator-level sample per process."""
    return {p: generate_events(p, n, beams=BEAMS, seed=100 + int(p)) for p, n in N_EVENTS.items()}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Written sample files of the processes the reconstruction-level tests need."""
    out = {}
    base = tmp_path_factory.mktemp("samples")
    for process in (Process.CHARGED, Process.KSTAR0NUNU, Process.JPSIK):
        path = base / f"{process.name.lower()}.root"
        meta = generate_sample(process, 3000, path, beams=BEAMS, seed=7, chunk_size=1000)
        out[process] = (path, meta)
    return out


def charged_multiplicity(ev) -> np.ndarray:
    charged = np.isin(np.abs(ev.pdg), CHARGED_PDG).astype(int)
    return np.add.reduceat(charged, ev.offsets[:-1])


def minkowski(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a[..., 0] * b[..., 0] - np.sum(a[..., 1:] * b[..., 1:], axis=-1)


def test_four_momentum_conservation(events):
    for process, ev in events.items():
        assert four_momentum_balance(ev).max() < 1e-6, process


def test_beam_energy_spread(events):
    initial = np.concatenate([ev.initial_p4 for ev in events.values()])
    sqrt_s = np.sqrt(minkowski(initial, initial))
    n = len(sqrt_s)
    # first-order propagation of the two beams' spreads (Beams.sqrt_s_spread), here sampled
    assert abs(sqrt_s.mean() - BEAMS.sqrt_s) < 4.0 * BEAMS.sqrt_s_spread / np.sqrt(n)
    assert sqrt_s.std() == pytest.approx(BEAMS.sqrt_s_spread, rel=4.0 / np.sqrt(2.0 * n))
    assert 4e-3 < BEAMS.sqrt_s_spread < 6e-3
    # the beams keep their directions: the boost changes only along z, and by little
    beta = initial[:, 1:] / initial[:, :1]
    assert np.allclose(beta[:, :2], BEAMS.beta[:2], rtol=0.0, atol=1e-12)
    assert abs(beta[:, 2].mean() - BEAMS.beta[2]) < 1e-5 and beta[:, 2].std() < 1e-3
    still = Beams(her_energy_spread=0.0, ler_energy_spread=0.0)
    ev = generate_events(Process.UUBAR, 100, beams=still, seed=1)
    assert np.allclose(ev.initial_p4, still.total, rtol=1e-12)


def test_b_momentum_and_pair_mass(events):
    for process, pdg in ((Process.CHARGED, 521), (Process.MIXED, 511)):
        b, initial = events[process].b_p4, events[process].initial_p4
        s = minkowski(initial, initial)
        # B momentum in the event's own CMS frame, from invariants: (P.b)^2 / s - m^2
        p_star = np.sqrt(minkowski(initial[:, None], b) ** 2 / s[:, None] - mass(pdg) ** 2)
        expected = np.sqrt(s / 4.0 - mass(pdg) ** 2)  # two-body formula
        assert np.allclose(p_star, expected[:, None], rtol=1e-6)
        assert 0.30 < expected.mean() < 0.36
        pair = b.sum(axis=1)
        assert np.allclose(minkowski(pair, pair), s, rtol=1e-9)


def test_bbbar_charged_multiplicity(events):
    mean = np.mean(np.concatenate([charged_multiplicity(events[p]) for p in (Process.CHARGED, Process.MIXED)]))
    assert 10.5 < mean < 11.5  # measured ~ 11 at the Upsilon(4S)


@pytest.mark.parametrize(
    "process, lo, hi",
    [
        (Process.UUBAR, 6.0, 9.5),
        (Process.DDBAR, 6.0, 9.5),
        (Process.SSBAR, 6.0, 9.5),
        (Process.CCBAR, 8.5, 12.0),
        (Process.TAUPAIR, 2.0, 3.2),
    ],
)
def test_continuum_multiplicity(events, process, lo, hi):
    assert lo < charged_multiplicity(events[process]).mean() < hi


def bz_fplus(q2: np.ndarray) -> np.ndarray:
    """Ball-Zwicky B -> K f+ (hep-ph/0406232, Table 1): r1 = 0.162, r2 = 0.173, m1 = 5.41 GeV."""
    x = 1.0 - q2 / 5.41**2
    return 0.162 / x + 0.173 / x**2


def test_signal_q2_spectrum(events):
    q2 = events[Process.KNUNU].q2
    m_b, m_k = mass(521), mass(321)
    edges = np.linspace(0.0, (m_b - m_k) ** 2, 13)
    fine = np.linspace(0.0, (m_b - m_k) ** 2, 20001)
    lam = (m_b**2 - m_k**2 - fine) ** 2 - 4.0 * m_k**2 * fine
    rate = np.clip(lam, 0.0, None) ** 1.5 * bz_fplus(fine) ** 2  # SM dGamma/dq2
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (rate[1:] + rate[:-1]) * np.diff(fine))])
    expected = np.diff(np.interp(edges, fine, cdf)) / cdf[-1] * len(q2)
    observed, _ = np.histogram(q2, edges)
    chi2 = np.sum((observed - expected) ** 2 / expected)
    assert chi2 < 35.0  # 12 bins; p ~ 5e-4
    assert np.all(q2 > 0.0)


def test_thrust_continuum_vs_bbbar(events):
    def mean_thrust(ev, n=300):
        axes = fibonacci_sphere(1500)
        values = []
        for i in range(n):
            sl = slice(ev.offsets[i], ev.offsets[i + 1])
            visible = ~np.isin(np.abs(ev.pdg[sl]), (12, 14, 16))
            p = (ev.p4[sl][visible] @ BEAMS.lab_to_cms.T)[:, 1:]
            values.append(np.abs(p @ axes.T).sum(axis=0).max() / np.linalg.norm(p, axis=1).sum())
        return np.mean(values)

    t_bb = mean_thrust(events[Process.CHARGED])
    t_uu = mean_thrust(events[Process.UUBAR])
    assert t_uu > t_bb + 0.05
    assert 0.65 < t_bb < 0.8


def fibonacci_sphere(n: int) -> np.ndarray:
    """Nearly uniform unit vectors on a hemisphere-covering sphere (brute-force thrust axes)."""
    i = np.arange(n) + 0.5
    cos_t = 1.0 - 2.0 * i / n
    phi = np.pi * (1.0 + 5**0.5) * i
    sin_t = np.sqrt(1.0 - cos_t**2)
    return np.stack([sin_t * np.cos(phi), sin_t * np.sin(phi), cos_t], axis=1)


def test_kstar0_mass_peak(files):
    path, _ = files[Process.KSTAR0NUNU]
    t = uproot.open(path)[ef.TREE_NAME].arrays(library="ak")
    masses = []
    for px, py, pz, pdg, mother in zip(t.track_px, t.track_py, t.track_pz, t.track_mcPDG, t.track_mcMotherPDG, strict=True):
        sel = np.abs(np.asarray(mother)) == 313
        if sel.sum() != 2:
            continue
        pdg_sel = np.abs(np.asarray(pdg)[sel])
        if sorted(pdg_sel) != [211, 321]:
            continue
        p = np.stack([np.asarray(px)[sel], np.asarray(py)[sel], np.asarray(pz)[sel]], axis=1).astype(float)
        m = np.array([mass(x) for x in pdg_sel])
        e = np.sqrt(m**2 + np.sum(p**2, axis=1))
        tot = np.r_[e.sum(), p.sum(axis=0)]
        masses.append(np.sqrt(tot[0] ** 2 - np.sum(tot[1:] ** 2)))
    counts, edges = np.histogram(masses, bins=np.arange(0.70, 1.10, 0.02))
    peak = 0.5 * (edges[np.argmax(counts)] + edges[np.argmax(counts) + 1])
    assert len(masses) > 500
    assert abs(peak - 0.892) < 0.02
    assert abs(np.median(masses) - 0.892) < 0.02


def test_jpsik_mbc(files):
    path, _ = files[Process.JPSIK]
    t = uproot.open(path)[ef.TREE_NAME].arrays(library="ak")
    mbc = []
    e_beam = BEAMS.sqrt_s / 2.0
    for px, py, pz, pdg, mother in zip(t.track_px, t.track_py, t.track_pz, t.track_mcPDG, t.track_mcMotherPDG, strict=True):
        pdg, mother = np.asarray(pdg), np.asarray(mother)
        muons = (mother == 443) & (np.abs(pdg) == 13)
        kaons = (np.abs(mother) == 521) & (np.abs(pdg) == 321)
        if muons.sum() != 2 or kaons.sum() != 1:
            continue
        sel = muons | kaons
        p = np.stack([np.asarray(px)[sel], np.asarray(py)[sel], np.asarray(pz)[sel]], axis=1).astype(float)
        m = np.array([mass(abs(x)) for x in pdg[sel]])
        p4 = np.column_stack([np.sqrt(m**2 + np.sum(p**2, axis=1)), p]).sum(axis=0)
        p_cms = BEAMS.lab_to_cms @ p4
        mbc.append(np.sqrt(e_beam**2 - np.sum(p_cms[1:] ** 2)))
    mbc = np.array(mbc)
    assert len(mbc) > 1000
    assert abs(np.median(mbc) - mass(521)) < 0.001
    # the nominal E*_beam differs from the event's sqrt(s)/2 by the beam-energy spread,
    # which dominates the resolution: sigma(Mbc) ~ sigma(sqrt(s)) / 2 (~2.5 MeV)
    q16, q84 = np.quantile(mbc, [0.16, 0.84])
    assert 0.5 * (q84 - q16) == pytest.approx(0.5 * BEAMS.sqrt_s_spread, rel=0.15)


def test_file_format_and_metadata(files, tmp_path):
    path, meta = files[Process.CHARGED]
    with uproot.open(path) as f:
        tree = f[ef.TREE_NAME]
        assert tree.keys() == ef.all_branches(mc=True)
        arrays = tree.arrays(["__event__", "mcProcess", "beamE", "nTracks", "track_px"], library="np")
    assert len(np.unique(arrays["__event__"])) == 3000  # unique across the 3 chunks
    assert np.all(arrays["mcProcess"] == int(Process.CHARGED))
    assert np.allclose(arrays["beamE"], BEAMS.total[0])
    assert read_metadata(path) == meta
    assert meta["n_events"] == 3000 and meta["seed"] == 7
    assert np.isclose(meta["luminosity_fb"], 3000 / cross_section(Process.CHARGED) / 1e6)

    data_path = tmp_path / "data.root"
    generate_sample(Process.UUBAR, 200, data_path, beams=Beams(SQRT_S_OFF_RESONANCE), seed=3, data=True)
    with uproot.open(data_path) as f:
        assert f[ef.TREE_NAME].keys() == ef.all_branches(mc=False)


def test_files_hold_baskets_of_at_most_ten_thousand_entries(tmp_path):
    """A chunk of a few thousand events then decompresses about its own part of each branch."""
    path = tmp_path / "baskets.root"
    generate_sample(Process.TAUPAIR, 25_000, path, beams=BEAMS, seed=5, chunk_size=25_000)
    with uproot.open(path) as f:
        tree = f["events"]
        for branch in ("__event__", "track_px"):
            assert tree[branch].entry_offsets == [0, 10_000, 20_000, 25_000]


def test_reproducible_by_seed(tmp_path):
    kwargs = dict(beams=BEAMS, chunk_size=300)
    # the file name is stored inside a ROOT file, so compare files of equal names
    a, b, c = (tmp_path / d / "s.root" for d in ("a", "b", "c"))
    generate_sample(Process.MIXED, 700, a, seed=11, **kwargs)
    generate_sample(Process.MIXED, 700, b, seed=11, **kwargs)
    generate_sample(Process.MIXED, 700, c, seed=12, **kwargs)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_temporary_file_then_rename(tmp_path, monkeypatch):
    path = tmp_path / "sample.root"
    seen = []

    def progress(done: int) -> None:
        seen.append((path.exists(), len(list(tmp_path.glob(".*incomplete")))))

    generate_sample(Process.TAUPAIR, 600, path, beams=BEAMS, seed=1, chunk_size=200, progress=progress)
    assert seen == [(False, 1)] * 3
    assert path.exists() and not list(tmp_path.glob(".*incomplete"))

    broken = tmp_path / "broken.root"

    def fail(done: int) -> None:
        if done >= 400:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate_sample(Process.TAUPAIR, 600, broken, beams=BEAMS, seed=1, chunk_size=200, progress=fail)
    assert not broken.exists()


def test_cross_sections():
    assert cross_section(Process.UUBAR) == pytest.approx(1.61)
    assert cross_section(Process.CHARGED) + cross_section(Process.MIXED) == pytest.approx(1.05)
    assert cross_section(Process.CHARGED, SQRT_S_OFF_RESONANCE) == 0.0
    assert cross_section(Process.CCBAR, SQRT_S_OFF_RESONANCE) == pytest.approx(1.30 * (10.58 / 10.52) ** 2)
    # 2 x f+- x B(B+ -> K+ nu nubar) with the SM value 4.97e-6
    assert cross_section(Process.KNUNU) == pytest.approx(1.05 * 0.514 * 2 * 4.97e-6)
    with pytest.raises(ValueError):
        generate_events(Process.CHARGED, 10, beams=Beams(SQRT_S_OFF_RESONANCE), seed=1)


def test_detector_response(events):
    reco = simulate_detector(events[Process.CHARGED], np.random.default_rng(5))
    tr = reco.tracks
    kaon, pion = np.abs(tr["mcPDG"]) == 321, np.abs(tr["mcPDG"]) == 211
    assert 0.6 < np.mean(tr["kaonID"][kaon] > 0.9) < 0.9
    assert np.mean(tr["kaonID"][pion] > 0.9) < 0.05
    # K0S daughters are displaced: large |dr|, mostly no PXD hits
    from_ks = tr["mcMotherPDG"] == 310
    prompt = np.abs(tr["mcMotherPDG"]) == 521
    assert np.median(np.abs(tr["dr"][from_ks])) > 0.1
    assert np.median(np.abs(tr["dr"][prompt])) < 0.01
    assert np.mean(tr["nPXDHits"][prompt] == 2) > 0.85
    # median transverse K0S flight ~ 1.8 cm: about half decay beyond the inner PXD layer
    assert np.mean(tr["nPXDHits"][from_ks] == 0) > 0.35
    assert np.mean(tr["nPXDHits"][from_ks] == 2) < 0.5
    pt = np.hypot(tr["px"], tr["py"])
    theta = np.arctan2(pt, tr["pz"])
    assert np.all((theta > np.radians(16.5)) & (theta < np.radians(150.5)))
    ph = reco.photons
    assert not np.any(np.isin(np.abs(ph["mcPDG"]), CHARGED_PDG))  # no photon entries from charged particles
    background = ph["mcPDG"] == 0
    assert 2.0 < background.sum() / events[Process.CHARGED].n_events < 4.0
    assert np.mean(ph["E"][background] < 0.1) > 0.7
    assert reco.n_tracks.sum() == len(tr["px"]) and reco.n_photons.sum() == len(ph["E"])


def test_truth_bookkeeping(events):
    table = decay_table()
    modes = [dau for _, dau in table.modes("B+")]
    signal_mode = modes.index(["K+", "nu_e", "anti-nu_e"])
    ev = events[Process.KNUNU]
    # exactly one B per event is the forced signal B (B+ or B-, same mode index)
    is_signal = ev.b_modes == signal_mode
    assert np.all(is_signal.sum(axis=1) >= 1)
    assert 0.45 < np.mean(is_signal[:, 0]) < 0.55
    generic = events[Process.CHARGED]
    assert np.all((generic.b_modes >= 0) & (generic.b_modes < len(modes)))
    assert np.all(generic.q2[generic.b_modes.max(axis=1) < signal_mode] == -1.0)
    assert np.all(events[Process.UUBAR].b_modes == -1) and np.all(events[Process.UUBAR].q2 == -1.0)


def test_tune_changes_continuum():
    nominal = generate_events(Process.UUBAR, 3000, beams=BEAMS, seed=9)
    tuned = generate_events(Process.UUBAR, 3000, beams=BEAMS, seed=9, tune={"units_per_string": 2.0, "pt_scale": 0.36})
    assert charged_multiplicity(tuned).mean() > charged_multiplicity(nominal).mean() + 0.5
