"""K* reconstruction kernels against an itertools brute force, and physics checks."""

from __future__ import annotations

import math
from itertools import combinations, permutations, product

import numpy as np
import pytest
import uproot

from kvv import histograms, kstar
from kvv.config.reconstruction import KstarCuts, Mode, Rank
from kvv.physics.beams import Beams
from kvv.physics.columns import BeamColumns, PhotonColumns, TrackColumns

# Wide windows so that random events have many candidates in every mode.
WIDE = KstarCuts(ks_mass_window=0.3, ks_dr_min=0.02, prompt_dr_max=0.2, pi0_mass_window=0.12, kstar_mass_window=0.6)


def make_tracks(events: list[list[tuple]]) -> TrackColumns:
    """Tracks from per-event lists of (px, py, pz, charge, dr, kaonID, pionID)."""
    rows = [t for ev in events for t in ev]
    col = np.array(rows, dtype=np.float64).reshape(-1, 7)
    offsets = np.concatenate([[0], np.cumsum([len(ev) for ev in events])]).astype(np.int64)
    return TrackColumns(
        offsets=offsets, px=col[:, 0].copy(), py=col[:, 1].copy(), pz=col[:, 2].copy(),
        charge=col[:, 3].astype(np.int32), dr=col[:, 4].copy(), dz=np.zeros(len(col)),
        n_pxd_hits=np.ones(len(col), dtype=np.int32), kaon_id=col[:, 5].copy(), pion_id=col[:, 6].copy(),
    )  # fmt: skip


def make_photons(events: list[list[tuple]]) -> PhotonColumns:
    """Photons from per-event lists of (E, theta, phi)."""
    col = np.array([g for ev in events for g in ev], dtype=np.float64).reshape(-1, 3)
    offsets = np.concatenate([[0], np.cumsum([len(ev) for ev in events])]).astype(np.int64)
    return PhotonColumns(offsets=offsets, energy=col[:, 0].copy(), theta=col[:, 1].copy(), phi=col[:, 2].copy())


def make_beam(n: int, beams: Beams = Beams()) -> BeamColumns:
    e, px, py, pz = beams.total
    return BeamColumns(energy=np.full(n, e), px=np.full(n, px), py=np.full(n, py), pz=np.full(n, pz))


def p4_of(p: tuple, m: float) -> tuple[float, ...]:
    return (math.sqrt(p[0] ** 2 + p[1] ** 2 + p[2] ** 2 + m * m), p[0], p[1], p[2])


def gamma_p4(g: tuple) -> tuple[float, ...]:
    e, th, ph = g
    return (e, e * math.sin(th) * math.cos(ph), e * math.sin(th) * math.sin(ph), e * math.cos(th))


def add(*vs):
    return tuple(sum(c) for c in zip(*vs, strict=True))


def mass(v) -> float:
    return math.sqrt(max(v[0] ** 2 - v[1] ** 2 - v[2] ** 2 - v[3] ** 2, 0.0))


def brute_force(tracks: list[tuple], photons: list[tuple], cuts: KstarCuts):
    """Every (K, pi), (K0S, pi0), (K, pi0), (K0S, pi) combination once; returns (best, count)."""
    q = [t[3] for t in tracks]
    prompt = [abs(t[4]) < cuts.prompt_dr_max for t in tracks]
    kaons = [k for k in range(len(tracks)) if q[k] != 0 and tracks[k][5] > cuts.kaon_id_cut and prompt[k]]
    pions = [p for p in range(len(tracks)) if q[p] != 0 and tracks[p][6] > cuts.pion_id_cut and prompt[p]]
    ks = []
    for a, b in combinations(range(len(tracks)), 2):
        if q[a] * q[b] >= 0 or min(abs(tracks[a][4]), abs(tracks[b][4])) < cuts.ks_dr_min:
            continue
        v = add(p4_of(tracks[a][:3], kstar.M_PION), p4_of(tracks[b][:3], kstar.M_PION))
        if abs(mass(v) - kstar.M_KS) < cuts.ks_mass_window:
            ks.append(((a, b) if q[a] > 0 else (b, a), v, mass(v)))
    pi0 = []
    for a, b in combinations(range(len(photons)), 2):
        v = add(gamma_p4(photons[a]), gamma_p4(photons[b]))
        m = mass(v)
        if m > 0 and abs(m - kstar.M_PI0) < cuts.pi0_mass_window:
            pi0.append(((a, b), tuple(c * kstar.M_PI0 / m for c in v), m))
    cands = []  # (rank key, mode, slots)

    def consider(mode: Mode, slots: tuple, v: tuple, ks_m: float = kstar.M_KS, pi0_m: float = kstar.M_PI0) -> None:
        dm = abs(mass(v) - kstar.MODE_MASS[mode])
        if mode not in cuts.modes or dm >= cuts.kstar_mass_window:
            return
        score = 1.0
        if slots[0] >= 0:
            score *= tracks[slots[0]][5]
        if slots[1] >= 0:
            score *= tracks[slots[1]][6]
        score *= math.exp(-0.5 * ((ks_m - kstar.M_KS) / cuts.ks_mass_sigma) ** 2)
        score *= math.exp(-0.5 * ((pi0_m - kstar.M_PI0) / cuts.pi0_mass_sigma) ** 2)
        cands.append((dm if cuts.rank == Rank.MASS else -score, int(mode), slots))

    for k, p in permutations(range(len(tracks)), 2):
        if k in kaons and p in pions and q[p] == -q[k]:
            consider(Mode.KSTAR0_KPI, (k, p, -1, -1, -1, -1), add(p4_of(tracks[k][:3], kstar.M_KAON), p4_of(tracks[p][:3], kstar.M_PION)))
    for ((a, b), vk, mk), ((g1, g2), vp, mp) in product(ks, pi0):
        consider(Mode.KSTAR0_KSPI0, (-1, -1, a, b, g1, g2), add(vk, vp), mk, mp)
    for k, ((g1, g2), vp, mp) in product(kaons, pi0):
        consider(Mode.KSTARP_KPI0, (k, -1, -1, -1, g1, g2), add(p4_of(tracks[k][:3], kstar.M_KAON), vp), pi0_m=mp)
    for ((a, b), vk, mk), p in product(ks, pions):
        if p not in (a, b):
            consider(Mode.KSTARP_KSPI, (-1, p, a, b, -1, -1), add(vk, p4_of(tracks[p][:3], kstar.M_PION)), ks_m=mk)
    return (min(cands) if cands else None), len(cands)


def random_events(rng: np.random.Generator, n: int) -> tuple[list, list]:
    tracks, photons = [], []
    for _ in range(n):
        tracks.append([
            (*rng.normal(0, 0.6, 3), int(rng.choice([-1, 1])), float(rng.choice([0.0, 0.01, 0.05, 0.3])), rng.random(), rng.random())
            for _ in range(rng.integers(0, 7))
        ])  # fmt: skip
        photons.append([(rng.uniform(0.05, 1.0), rng.uniform(0.3, 2.6), rng.uniform(-np.pi, np.pi)) for _ in range(rng.integers(0, 6))])
    return tracks, photons


def run(tracks: list, photons: list, cuts: KstarCuts) -> dict:
    return kstar.reconstruct_kstar(make_tracks(tracks), make_photons(photons), make_beam(len(tracks)), cuts)


@pytest.mark.parametrize("rank", list(Rank))
@pytest.mark.parametrize("modes", [tuple(Mode), (Mode.KSTAR0_KPI,), (Mode.KSTAR0_KSPI0, Mode.KSTARP_KSPI), (Mode.KSTARP_KPI0,)])
def test_matches_brute_force(modes, rank):
    rng = np.random.default_rng(7)
    tracks, photons = random_events(rng, 300)
    cuts = WIDE.model_copy(update={"modes": modes, "rank": rank})
    out = run(tracks, photons, cuts)
    n_with = 0
    for i in range(len(tracks)):
        best, count = brute_force(tracks[i], photons[i], cuts)
        assert out["n_kstar_candidates"][i] == count
        if best is None:
            assert out["kstar_mode"][i] == -1 and not out["has_kstar"][i]
            assert np.all(out["daughters"][i] == -1) and out["kstar_mass"][i] == 0.0
            continue
        n_with += 1
        assert out["kstar_mode"][i] == best[1]
        assert tuple(out["daughters"][i]) == best[2]
        if rank == Rank.MASS:
            assert abs(out["kstar_mass"][i] - kstar.MODE_MASS[best[1]]) == pytest.approx(best[0], abs=1e-12)
    assert n_with > 10  # the windows really let candidates through
    assert set(out["kstar_mode"][out["has_kstar"]]) == set(modes)


def test_empty_and_single_object_events():
    tracks = [[], [(0.5, 0.1, 0.2, 1, 0.0, 0.9, 0.9)], [], [(0.3, 0.0, 0.1, -1, 0.1, 0.9, 0.9)]]
    photons = [[], [], [(0.5, 1.0, 0.2)], [(0.2, 1.2, 0.0)]]
    out = run(tracks, photons, WIDE)
    assert np.all(out["kstar_mode"] == -1)
    assert np.all(out["n_kstar_candidates"] == 0)
    for name, values in out.items():
        assert np.all(np.isfinite(values)), name
    # without candidate the whole event is the ROE
    assert list(out["roe_n_tracks"]) == [0, 1, 0, 1]
    assert list(out["roe_n_photons"]) == [0, 0, 1, 1]


def test_charge_and_pid_requirements():
    k = (0.8, 0.2, 0.4)
    pi = (-0.1, 0.25, 0.1)
    cuts = KstarCuts(kstar_mass_window=5.0, modes=(Mode.KSTAR0_KPI,))
    events = [
        [(*k, 1, 0, 0.9, 0.1), (*pi, -1, 0, 0.1, 0.9)],  # K+ pi-: one candidate
        [(*k, 1, 0, 0.9, 0.1), (*pi, 1, 0, 0.1, 0.9)],  # same sign: none
        [(*k, 1, 0, 0.4, 0.1), (*pi, -1, 0, 0.1, 0.9)],  # kaonID too low
        [(*k, 1, 0, 0.9, 0.1), (*pi, -1, 0, 0.1, 0.4)],  # pionID too low
        [(*k, -1, 0, 0.9, 0.9), (*pi, 1, 0, 0.9, 0.9)],  # both ID: K-pi+ and pi-K+ hypotheses
    ]
    out = run(events, [[]] * len(events), cuts)
    assert list(out["n_kstar_candidates"]) == [1, 0, 0, 0, 2]
    assert tuple(out["daughters"][0][:2]) == (0, 1)


def test_ks_displacement_requirement():
    # pi+ pi- from a K0S at rest-ish: the pair mass is M_KS for either dr
    p = kstar.M_KS / 2
    pstar = math.sqrt(p * p - kstar.M_PION**2)
    prompt = [(0.3, 0.0, pstar, 1, 0.001, 0.0, 0.0), (0.3, 0.0, -pstar, -1, 0.001, 0.0, 0.0)]
    displaced = [(0.3, 0.0, pstar, 1, 0.1, 0.0, 0.0), (0.3, 0.0, -pstar, -1, -0.1, 0.0, 0.0)]
    bachelor = (0.2, 0.3, 0.1, 1, 0.0, 0.0, 0.9)
    cuts = KstarCuts(kstar_mass_window=5.0, modes=(Mode.KSTARP_KSPI,))
    out = run([[*prompt, bachelor], [*displaced, bachelor]], [[], []], cuts)
    assert list(out["kstar_mode"]) == [-1, Mode.KSTARP_KSPI]
    assert tuple(out["daughters"][1]) == (-1, 2, 0, 1, -1, -1)
    assert out["ks_mass_pull"][1] == pytest.approx(0.0, abs=0.3)


@pytest.mark.parametrize("rank", list(Rank))
def test_ties_go_to_lowest_indices(rank):
    k = (0.8, 0.2, 0.4, 1, 0.0, 0.9, 0.1)
    pi = (-0.1, 0.25, 0.1, -1, 0.0, 0.1, 0.9)
    out = run([[pi, k, pi, k]], [[]], KstarCuts(modes=(Mode.KSTAR0_KPI,), kstar_mass_window=5.0, rank=rank))
    assert out["n_kstar_candidates"][0] == 4
    assert tuple(out["daughters"][0][:2]) == (1, 0)


def decay_in_lab(parent_cms: np.ndarray, m1: float, m2: float, cos_hel: float, beams: Beams) -> tuple[np.ndarray, np.ndarray]:
    """Two-body decay with daughter 1 at helicity angle ``cos_hel``, returned in the lab."""
    m = kstar.M_KSTAR0
    p = math.sqrt((m * m - (m1 + m2) ** 2) * (m * m - (m1 - m2) ** 2)) / (2 * m)
    axis = parent_cms[1:] / np.linalg.norm(parent_cms[1:])
    ortho = np.cross(axis, [0.0, 0.0, 1.0])
    ortho /= np.linalg.norm(ortho)
    direction = cos_hel * axis + math.sqrt(1 - cos_hel**2) * ortho
    d1 = np.array([math.sqrt(p * p + m1 * m1), *(p * direction)])
    d2 = np.array([math.sqrt(p * p + m2 * m2), *(-p * direction)])
    from kvv.physics.beams import boost_matrix

    to_cms = boost_matrix(parent_cms[1:] / parent_cms[0])
    return beams.cms_to_lab @ (to_cms @ d1), beams.cms_to_lab @ (to_cms @ d2)


@pytest.mark.parametrize("cos_hel", [-0.8, 0.0, 0.6])
def test_kinematics_of_a_known_kstar(cos_hel):
    beams = Beams()
    p_cms = np.array([0.7, -1.1, 1.5])
    parent = np.array([math.sqrt(p_cms @ p_cms + kstar.M_KSTAR0**2), *p_cms])
    k, pi = decay_in_lab(parent, kstar.M_KAON, kstar.M_PION, cos_hel, beams)
    extra = (0.3, -0.2, 0.5, 1, 0.0, 0.0, 0.0)
    tracks = [[(*k[1:], 1, 0.0, 0.9, 0.0), (*pi[1:], -1, 0.0, 0.0, 0.9), extra]]
    photons = [[(0.4, 1.0, 2.0)]]
    out = run(tracks, photons, KstarCuts())
    assert out["kstar_mode"][0] == Mode.KSTAR0_KPI
    assert out["kstar_mass"][0] == pytest.approx(kstar.M_KSTAR0, abs=1e-9)
    assert out["kstar_p_cms"][0] == pytest.approx(np.linalg.norm(p_cms), rel=1e-9)
    assert out["kstar_cos_helicity"][0] == pytest.approx(cos_hel, abs=1e-9)
    s = beams.sqrt_s**2
    assert out["q2_rec"][0] == pytest.approx(s / 4 + kstar.M_KSTAR0**2 - beams.sqrt_s * parent[0], rel=1e-9)
    # ROE: the extra track (pion hypothesis) and the photon; visible = K* + ROE
    assert out["roe_n_tracks"][0] == 1 and out["roe_n_photons"][0] == 1 and out["roe_charge"][0] == 1
    lab = [np.array(p4_of(extra[:3], kstar.M_PION)), np.array(gamma_p4(photons[0][0]))]
    roe_cms = beams.lab_to_cms @ (lab[0] + lab[1])
    assert out["roe_energy"][0] == pytest.approx(roe_cms[0], rel=1e-9)
    assert out["e_miss"][0] == pytest.approx(beams.sqrt_s - roe_cms[0] - parent[0], rel=1e-9)
    assert out["e_visible_cms"][0] == pytest.approx(roe_cms[0] + parent[0], rel=1e-9)
    miss_lab = beams.total - lab[0] - lab[1] - k - pi
    assert out["theta_miss"][0] == pytest.approx(math.atan2(math.hypot(*miss_lab[1:3]), miss_lab[3]), abs=1e-9)


def test_truth_matching():
    track_offsets = np.array([0, 2, 5])
    pdg = np.array([321, -211, 211, -211, 211])
    mother = np.array([313, 313, 310, 310, 323])
    photon_offsets = np.array([0, 0, 2])
    gpdg = np.array([22, 22])
    gmother = np.array([111, 111])
    mode = np.array([Mode.KSTAR0_KPI, Mode.KSTARP_KSPI])
    daughters = np.array([[0, 1, -1, -1, -1, -1], [-1, 2, 0, 1, -1, -1]])
    ok = kstar.truth_matched(mode, daughters, track_offsets, pdg, mother, photon_offsets, gpdg, gmother)
    assert list(ok) == [True, True]
    daughters[1] = [-1, 1, 0, 2, -1, -1]  # bachelor from a K0S, K0S pion from the K*+
    ok = kstar.truth_matched(mode, daughters, track_offsets, pdg, mother, photon_offsets, gpdg, gmother)
    assert list(ok) == [True, False]


# --- on simulated B -> K* nu nubar samples ---------------------------------------------------------

LOOSE_CLEANUP = {"tracks": {"dr_max": 10.0}}  # keep displaced K0S daughters, see kvv.kstar


def load_sample(path, cleanup: dict | None = None) -> dict:
    """Cleaned flat columns of a generated file, plus the MC truth and muonID aligned with them."""
    import awkward as ak
    from coffea.nanoevents import NanoEventsFactory

    from kvv import selection
    from kvv.config import Cleanup
    from kvv.io.schema import Belle2Schema

    events = NanoEventsFactory.from_root({str(path): "events"}, schemaclass=Belle2Schema, mode="eager").events()
    cuts = Cleanup.model_validate(cleanup or {})
    tracks = events.Tracks[selection.track_mask(events.Tracks, cuts.tracks)]
    photons = events.Photons[selection.photon_mask(events.Photons, cuts.photons)]

    def flat(values):
        return np.asarray(ak.to_numpy(ak.flatten(values)))

    return {
        "tracks": selection.track_columns(tracks),
        "photons": selection.photon_columns(photons),
        "beam": selection.beam_columns(events),
        "muon_id": flat(tracks.muonID).astype(np.float64),
        "track_pdg": flat(tracks.mcPDG),
        "track_mother": flat(tracks.mcMotherPDG),
        "photon_pdg": flat(photons.mcPDG),
        "photon_mother": flat(photons.mcMotherPDG),
        "mcq2": np.asarray(ak.to_numpy(events.mcq2)),
    }


@pytest.fixture(scope="module")
def kstar_samples(tmp_path_factory) -> dict:
    from kvv.eventformat import Process
    from kvv.simulate import generate_sample

    out = {}
    for process in (Process.KSTAR0NUNU, Process.KSTARPNUNU):
        path = tmp_path_factory.mktemp("kstar") / f"{process.name}.root"
        generate_sample(process, 4000, path, beams=Beams(), seed=int(process), chunk_size=4000)
        sample = load_sample(path, LOOSE_CLEANUP)
        reco = kstar.reconstruct_kstar(sample["tracks"], sample["photons"], sample["beam"])
        matched = kstar.truth_matched(
            reco["kstar_mode"], reco["daughters"], sample["tracks"].offsets, sample["track_pdg"], sample["track_mother"],
            sample["photons"].offsets, sample["photon_pdg"], sample["photon_mother"],
        )  # fmt: skip
        out[process.name] = (reco, matched, sample)
        out[f"{process.name}_path"] = path
    return out


# (sample, mode, generated fraction of the mode in the sample, minimum efficiency, IQR range / natural width)
PEAKS = [
    ("KSTAR0NUNU", Mode.KSTAR0_KPI, 2 / 3, 0.4, (0.65, 0.95)),
    ("KSTARPNUNU", Mode.KSTARP_KSPI, 2 / 3, 0.2, (0.65, 1.0)),
    ("KSTARPNUNU", Mode.KSTARP_KPI0, 1 / 3, 0.2, (0.65, 1.25)),
]


@pytest.mark.parametrize("sample, mode, fraction, min_eff, iqr_range", PEAKS)
def test_kstar_peak_on_simulation(kstar_samples, sample, mode, fraction, min_eff, iqr_range):
    """Truth-matched K* masses peak at the PDG mass with the natural width (+ resolution).

    The mass window |m - M| < 0.1 GeV truncates the Breit-Wigner at 2.1 widths, so
    its interquartile range is tan(atan(2 * 0.1 / Gamma) / 2) Gamma = 0.79 Gamma.
    """
    reco, matched, _ = kstar_samples[sample]
    in_mode = reco["kstar_mode"] == mode
    masses = reco["kstar_mass"][in_mode & matched]
    efficiency = len(masses) / (fraction * len(in_mode))
    assert efficiency > min_eff
    assert np.count_nonzero(in_mode & matched) / np.count_nonzero(in_mode) > 0.5  # purity
    q1, median, q3 = np.quantile(masses, [0.25, 0.5, 0.75])
    width = kstar.WIDTH_KSTAR0 if mode == Mode.KSTAR0_KPI else kstar.WIDTH_KSTARP
    assert median == pytest.approx(kstar.MODE_MASS[mode], abs=0.005)
    assert iqr_range[0] * width < q3 - q1 < iqr_range[1] * width


def test_kstar_q2_and_helicity_on_simulation(kstar_samples):
    reco, matched, sample = kstar_samples["KSTAR0NUNU"]
    good = matched & reco["has_kstar"]
    assert np.corrcoef(reco["q2_rec"][good], sample["mcq2"][good])[0, 1] > 0.75
    assert np.all(np.abs(reco["kstar_cos_helicity"]) <= 1.0)
    assert abs(np.mean(reco["kstar_cos_helicity"][good])) < 0.15  # phase-space K* decays: flat


def test_processor_fills_one_region_per_mode(kstar_samples):
    from coffea import processor

    from kvv.config import AnalysisConfig, load_config
    from kvv.io.schema import Belle2Schema
    from processors.kstar import KstarProcessor

    # without BDT models: the regions cut on the K* mode only
    raw = load_config("kstar2024").model_dump()
    for region in raw["regions"]:
        region["cuts"] = {"kstar_mode": region["cuts"]["kstar_mode"]}
    cfg = AnalysisConfig.model_validate(raw)
    fileset = {"kstar0nunu": {"files": {str(kstar_samples["KSTAR0NUNU_path"]): "events"}, "metadata": {"weight": 0.5}}}
    runner = processor.Runner(executor=processor.IterativeExecutor(), schema=Belle2Schema, chunksize=2000)
    out = runner(fileset, KstarProcessor(cfg), treename="events")
    cutflow = out["cutflow"]["kstar0nunu"]
    assert cutflow["entries read"] == 4000
    reco = kstar_samples["KSTAR0NUNU"][0]
    assert cutflow["K* candidate"] == np.count_nonzero(reco["has_kstar"])
    final = cutflow["E_vis(CMS) > 4.0 GeV"]
    nominal = {"dataset": "kstar0nunu", "variation": "nominal"}
    yields = {r: h[nominal].values().sum() for r, h in out["templates"].items()}
    assert sum(yields.values()) == pytest.approx(0.5 * final)  # every preselected event in one region (no flow bins)
    assert yields["KST0_KPI"] > yields["KSTP_KSPI"] > 0


# ---------------------------------------------------------------- the K* analysis end to end


@pytest.mark.slow
def test_small_kstar_analysis_end_to_end(small_kstar_analysis, tmp_path):
    """Simulate -> per-charge BDTs -> per-mode templates -> one mu over the four mode channels:
    the toy's injected signal is recovered, each event is scored by its own category's models,
    and every mode region reports its signal efficiency and purity."""
    import json

    import pandas as pd

    from kvv import bdt
    from kvv.config import load_config
    from kvv.run import main

    cfg = load_config(small_kstar_analysis)
    outputs = tmp_path / "outputs"
    assert (
        main(["--config", str(small_kstar_analysis), "--executor", "futures", "--workers", "2", "--outputs", str(outputs), "--no-progress"])
        == 0
    )
    out = outputs / cfg.name

    # one BDT pair per K* charge, each scoring only its own events
    summary = json.loads((out / "bdt_summary.json").read_text())
    assert set(summary) == set(cfg.bdt.categories) == {"neutral", "charged"}
    table = pd.concat([pd.read_parquet(p) for p in sorted((out / "tables").glob("*.parquet"))], ignore_index=True)
    columns = {k: table[k].to_numpy() for k in table.columns if k != "sample"}
    scores = bdt.score(cfg.bdt, out / "models", columns, columns["__event__"])
    for name, mask in bdt.category_masks(cfg.bdt, columns).items():
        models = bdt.load_models(out / "models" / name, bdt.stage_features(cfg.bdt))
        own = bdt.score_chunk(models, {k: v[mask] for k, v in columns.items()}, columns["__event__"][mask])
        np.testing.assert_array_equal(scores["bdt1"][mask], own["bdt1"])
        assert summary[name]["auc_bdt1"] > 0.6
    outside = ~np.logical_or.reduce(list(bdt.category_masks(cfg.bdt, columns).values()))
    assert np.isnan(scores["bdt1"][outside]).all()

    # per-mode yields: K*0 signal dominates the K*0 modes, K*+ signal the K*+ modes
    regions = json.loads((out / "regions.json").read_text())
    assert set(regions) == {r.name for r in cfg.regions}
    for name, row in regions.items():
        assert row["signal"] > 0 and 0 < row["purity"] < 1
        own, other = ("kstar0nunu", "kstarpnunu") if name.startswith("KST0") else ("kstarpnunu", "kstar0nunu")
        assert row["efficiency"][own] > row["efficiency"][other]

    # the K* mass per mode: the split control adds up to the unsplit one, each mode's
    # signal peaks at its K* mass, and it is written out per mode
    hists = histograms.load_pickle(out / "histograms.pkl")["controls"]
    split, whole = hists["kstar_mass_by_kstar_mode"], hists["kstar_mass"]
    np.testing.assert_allclose(split.project("dataset", "kstar_mass").values(), whole.values(), rtol=1e-12)
    rows = json.loads((out / "signal_shapes.json").read_text())
    shapes = {r["category"]: r for r in rows if r["control"] == "kstar_mass_by_kstar_mode"}
    assert sorted(shapes) == [0, 1, 2, 3]
    for mode in kstar.Mode:
        assert shapes[mode]["median"] == pytest.approx(kstar.MODE_MASS[mode], abs=0.02), mode.name
        assert (out / "plots" / f"kstar_mass_by_kstar_mode{int(mode)}_on.png").exists()
    with uproot.open(out / "histograms.root") as f:
        assert f["controls/kstar_mass_by_kstar_mode/kstar0nunu/0"].values().sum() > 0
    # truth-matched K* line shapes: Breit-Wigner fits at the generated mass and width;
    # the pi0 resolution widens K*+ -> K+ pi0, so only its mass is compared
    fits = {r["category"]: r["peak_fit"] for r in rows if r["control"] == "kstar_mass_truth_matched"}
    for mode in (Mode.KSTAR0_KPI, Mode.KSTARP_KPI0):
        fit = fits[mode]
        assert fit["converged"], mode.name
        assert abs(fit["mean"] - kstar.MODE_MASS[mode]) < 3 * fit["mean_error"] + 0.001, mode.name
    fit, natural = fits[Mode.KSTAR0_KPI], kstar.WIDTH_KSTAR0
    assert abs(fit["width"] - natural) < 3 * fit["width_error"] + 0.002

    # one mu over the four mode channels recovers the toy's injected signal
    fit = json.loads((out / "fit" / "fit_results.json").read_text())["mle"]
    workspace = json.loads((out / "workspace.json").read_text())
    assert {c["name"] for c in workspace["channels"]} == {r.name for r in cfg.regions}
    lo, hi = fit["minos"]
    assert fit["poi_value"] + 2 * lo < cfg.fit.injected_mu < fit["poi_value"] + 2 * hi
    assert hi - lo < cfg.fit.injected_mu, "the injected signal stands out of the uncertainty"
