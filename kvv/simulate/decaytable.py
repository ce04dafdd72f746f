"""The decay table (``decays.yaml``) encoded as flat arrays for the numba kernels.

Particles are addressed by a dense index ("ptype"); every particle that appears
anywhere in the table, and its charge conjugate, gets one. Masses, widths and
lifetimes are taken from the PDG through the ``particle`` package.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from typing import NamedTuple

import numpy as np
import yaml
from particle import Particle

from kvv.physics.formfactors import phase_space_weight
from kvv.simulate.phasespace import estimate_max_weight

MODELS = {"PHSP": 0, "BKNUNU": 1, "VSS": 2, "VLL": 3}
BW_WINDOW = 3.0  # resonance masses are sampled within +-3 widths (and above threshold)
MIN_WIDTH = 1e-3  # GeV; narrower states are generated at their nominal mass
FLAVOURS = ("u", "d", "s", "c")
RARE_BF = 1e-4  # modes below this branching fraction are not renormalised
NEUTRINOS = {12, 14, 16}


class Tables(NamedTuple):
    """Flat arrays handed to the generator kernel (all indices are ptypes or mode rows)."""

    pdg: np.ndarray  # int32 per ptype
    conj: np.ndarray  # int64, ptype of the charge conjugate
    mass: np.ndarray  # GeV
    width: np.ndarray  # GeV (0 for fixed-mass generation)
    mass_lo: np.ndarray  # GeV, Breit-Wigner window
    mass_hi: np.ndarray
    ctau: np.ndarray  # cm (0: decays at its production point)
    charge: np.ndarray  # int32
    mode_start: np.ndarray  # int64, first mode row of the ptype
    mode_count: np.ndarray  # int64, 0 for stable particles
    mode_cum: np.ndarray  # cumulative branching fraction within the ptype (normalised)
    mode_bf: np.ndarray  # branching fraction as written in the table (not normalised)
    mode_model: np.ndarray  # int32, MODELS
    mode_wmax: np.ndarray  # maximum of the matrix-element weight (BKNUNU)
    mode_psmax: np.ndarray  # maximum GENBOD weight (<= 0: use the analytic bound)
    mode_signal: np.ndarray  # int32, 1 for B -> K(*) nu nubar (sets mcq2)
    dau_start: np.ndarray  # int64 per mode
    dau_count: np.ndarray
    daughters: np.ndarray  # int64 ptypes
    group_start: np.ndarray  # fragmentation hadron groups
    group_count: np.ndarray
    group_members: np.ndarray
    lead_group: np.ndarray  # (4, k) group ids per quark flavour u, d, s, c
    lead_cum: np.ndarray  # (4, k) cumulative weights
    unit_group: np.ndarray  # (u,) group ids of charge-neutral hadron units
    unit_cum: np.ndarray


@dataclass(frozen=True)
class DecayTable:
    """The loaded decay table: kernel arrays plus name/mode bookkeeping."""

    tables: Tables
    names: tuple[str, ...]
    index: dict[str, int]  # EvtGen name -> ptype
    forced: dict[str, np.ndarray]  # sample name -> forced mode row per ptype (-1: free)

    def ptype(self, name: str) -> int:
        return self.index[name]

    def modes(self, name: str) -> list[tuple[float, list[str]]]:
        """(branching fraction, daughter names) of every mode of a particle."""
        t = self.tables
        i = self.index[name]
        out = []
        prev = 0.0
        for row in range(t.mode_start[i], t.mode_start[i] + t.mode_count[i]):
            dau = t.daughters[t.dau_start[row] : t.dau_start[row] + t.dau_count[row]]
            out.append((float(t.mode_cum[row] - prev), [self.names[d] for d in dau]))
            prev = t.mode_cum[row]
        return out

    def forced_fraction(self, sample: str, name: str) -> float:
        """Fraction of all decays of ``name`` that the forced decays of ``sample`` keep."""
        return _forced_fraction(self, sample, self.index[name])


def _forced_fraction(table: DecayTable, sample: str, i: int) -> float:
    t = table.tables
    forced = table.forced[sample]
    rows = range(t.mode_start[i], t.mode_start[i] + t.mode_count[i])
    if not rows:
        return 1.0
    total = 0.0
    for row in rows:
        if forced[i] >= 0:
            if row != forced[i]:
                continue
            bf = t.mode_bf[row]  # a forced mode keeps its absolute branching fraction
        else:
            bf = t.mode_cum[row] - (t.mode_cum[row - 1] if row > t.mode_start[i] else 0.0)
        dau = t.daughters[t.dau_start[row] : t.dau_start[row] + t.dau_count[row]]
        total += bf * float(np.prod([_forced_fraction(table, sample, d) for d in dau]))
    return total


@functools.lru_cache(maxsize=1)
def load_decay_table() -> DecayTable:
    """Read ``decays.yaml`` shipped with the package and build the flat arrays."""
    text = resources.files("kvv.simulate").joinpath("decays.yaml").read_text()
    return build_decay_table(yaml.safe_load(text))


def _pdgid(name: str, pseudo: dict) -> int:
    if name in pseudo:
        return int(pseudo[name]["pdgid"])
    return int(Particle.from_evtgen_name(name).pdgid)


def _conjugate_pdgid(pdgid: int, pseudo_ids: set[int]) -> int:
    if pdgid in pseudo_ids:
        return pdgid
    try:
        Particle.from_pdgid(-pdgid)
    except Exception:  # self-conjugate: no particle with the opposite code
        return pdgid
    return -pdgid


def _properties(pdgid: int, pseudo_ids: set[int]) -> tuple[float, float, float, int]:
    """(mass GeV, width GeV, c tau cm, charge) from the PDG via ``particle``."""
    if pdgid in pseudo_ids:
        return 0.0, 0.0, 0.0, 0
    p = Particle.from_pdgid(pdgid)
    mass = (p.mass or 0.0) / 1000.0
    width = (p.width or 0.0) / 1000.0
    ctau = p.ctau / 10.0 if p.ctau is not None and np.isfinite(p.ctau) else 0.0
    charge = p.charge
    if charge is None:
        raise ValueError(f"the PDG data of `particle` have no charge for {pdgid}")
    # only lifetimes that leave a measurable flight distance (> 1 micron) are simulated
    return mass, (width if width >= MIN_WIDTH else 0.0), (ctau if ctau > 1e-4 else 0.0), int(charge)


def build_decay_table(spec: dict) -> DecayTable:
    """Encode a parsed decay-table specification (see ``decays.yaml``)."""
    pseudo = spec.get("pseudo_particles", {})
    pseudo_ids = {int(v["pdgid"]) for v in pseudo.values()}
    pdg_of = functools.partial(_pdgid, pseudo=pseudo)
    conj_of = functools.partial(_conjugate_pdgid, pseudo_ids=pseudo_ids)

    # decays keyed by pdgid, charge conjugates derived with the same mode order
    decays: dict[int, list[tuple[float, list[int], int]]] = {}
    for name, modes in spec["decays"].items():
        rows = [(float(m[0]), [pdg_of(d) for d in m[1]], MODELS[m[2] if len(m) > 2 else "PHSP"]) for m in modes]
        parent = pdg_of(name)
        decays[parent] = rows
        cc = conj_of(parent)
        if cc != parent:
            decays[cc] = [(bf, [conj_of(d) for d in dau], model) for bf, dau, model in rows]

    groups: list[list[int]] = []

    def add_group(members: list[str]) -> int:
        groups.append([pdg_of(n) for n in members])
        return len(groups) - 1

    frag = spec["fragmentation"]
    lead = [[(float(w), add_group(m)) for w, m in frag["leading"][f]] for f in FLAVOURS]
    units = [(float(w), add_group(m)) for w, m in frag["units"]]

    # every particle referenced, plus its conjugate, gets a ptype
    pdgids: set[int] = set(decays) | pseudo_ids
    for rows in decays.values():
        for _, dau, _ in rows:
            pdgids.update(dau)
    for g in groups:
        pdgids.update(g)
    pdgids.update(pdg_of(n) for forced in spec["forced"].values() for n in forced)
    pdgids.update([conj_of(p) for p in pdgids])
    pdgids.add(int(Particle.from_evtgen_name("pi+").pdgid))  # charge balance of strings
    pdgids.add(-int(Particle.from_evtgen_name("pi+").pdgid))
    order = sorted(pdgids, key=lambda p: (abs(p), p))
    ptype = {p: i for i, p in enumerate(order)}
    n = len(order)

    props = np.array([_properties(p, pseudo_ids)[:3] for p in order]).reshape(n, 3)
    charge = np.array([_properties(p, pseudo_ids)[3] for p in order], dtype=np.int32)
    mass, width, ctau = props[:, 0].copy(), props[:, 1].copy(), props[:, 2].copy()

    mode_start = np.zeros(n, dtype=np.int64)
    mode_count = np.zeros(n, dtype=np.int64)
    cum: list[float] = []
    bf_col: list[float] = []
    model_col: list[int] = []
    sig_col: list[int] = []
    dstart: list[int] = []
    dcount: list[int] = []
    dau_flat: list[int] = []
    for p in order:
        rows = decays.get(p, [])
        mode_start[ptype[p]] = len(cum)
        mode_count[ptype[p]] = len(rows)
        # rare modes (signal, B(K* nu nu) ~ 1e-5) keep their absolute branching fraction;
        # the others are scaled to fill the rest of the unit total
        rare = sum(r[0] for r in rows if r[0] < RARE_BF)
        scale = (1.0 - rare) / sum(r[0] for r in rows if r[0] >= RARE_BF) if rows else 1.0
        acc = 0.0
        for bf, dau, model in rows:
            acc += bf if bf < RARE_BF else bf * scale
            cum.append(acc)
            bf_col.append(bf)
            model_col.append(model)
            nus = [d for d in dau if abs(d) in NEUTRINOS]
            sig_col.append(int(abs(p) in (511, 521) and len(nus) == 2 and nus[0] == -nus[1]))
            dstart.append(len(dau_flat))
            dcount.append(len(dau))
            dau_flat.extend(ptype[d] for d in dau)
        if rows:
            cum[-1] = 1.0

    # Breit-Wigner windows: +-3 widths, above the lightest decay threshold (lightest first)
    mass_lo, mass_hi = mass.copy(), mass.copy()
    for p in sorted(order, key=lambda q: mass[ptype[q]]):
        i = ptype[p]
        if width[i] == 0.0:
            continue
        thresholds = [sum(mass_lo[ptype[d]] for d in dau) for _, dau, _ in decays.get(p, [])]
        lo = max(mass[i] - BW_WINDOW * width[i], min(thresholds, default=0.0) + 1e-3)
        mass_lo[i], mass_hi[i] = lo, mass[i] + BW_WINDOW * width[i]

    daughters = np.array(dau_flat, dtype=np.int64)
    dau_start = np.array(dstart, dtype=np.int64)
    dau_count = np.array(dcount, dtype=np.int64)
    mode_model = np.array(model_col, dtype=np.int32)
    mode_wmax = np.ones(len(cum))
    for row in np.flatnonzero(mode_model == MODELS["BKNUNU"]):
        parent = int(np.searchsorted(mode_start, row, side="right") - 1)
        while mode_count[parent] == 0 or row >= mode_start[parent] + mode_count[parent]:
            parent -= 1
        m_b = mass[parent]
        m_k = mass[daughters[dau_start[row]]]
        q2 = np.linspace(0.0, (m_b - m_k) ** 2, 4001)
        # 2 % margin above the grid maximum keeps accept-reject unbiased
        # (the pure-Python twin of the kernel avoids compiling it for another signature)
        mode_wmax[row] = 1.02 * max(phase_space_weight.py_func(float(q), m_b, m_k) for q in q2)

    mode_psmax = _phase_space_maxima(mode_start, mode_count, dau_start, dau_count, daughters, mass_hi, mass_lo)

    tables = Tables(
        pdg=np.array(order, dtype=np.int32),
        conj=np.array([ptype[conj_of(p)] for p in order], dtype=np.int64),
        mass=mass,
        width=width,
        mass_lo=mass_lo,
        mass_hi=mass_hi,
        ctau=ctau,
        charge=charge,
        mode_start=mode_start,
        mode_count=mode_count,
        mode_cum=np.array(cum),
        mode_bf=np.array(bf_col),
        mode_model=mode_model,
        mode_wmax=mode_wmax,
        mode_psmax=mode_psmax,
        mode_signal=np.array(sig_col, dtype=np.int32),
        dau_start=dau_start,
        dau_count=dau_count,
        daughters=daughters,
        group_start=np.cumsum([0] + [len(g) for g in groups[:-1]]).astype(np.int64),
        group_count=np.array([len(g) for g in groups], dtype=np.int64),
        group_members=np.array([ptype[m] for g in groups for m in g], dtype=np.int64),
        lead_group=_padded([[g for _, g in row] for row in lead], np.int64),
        lead_cum=_padded([np.cumsum([w for w, _ in row]) / sum(w for w, _ in row) for row in lead], np.float64),
        unit_group=np.array([g for _, g in units], dtype=np.int64),
        unit_cum=np.cumsum([w for w, _ in units]) / sum(w for w, _ in units),
    )
    names = tuple(_name(p, pseudo) for p in order)
    index = {nm: i for i, nm in enumerate(names)}
    forced = {}
    for sample, entries in spec["forced"].items():
        arr = np.full(n, -1, dtype=np.int64)
        for parent_name, dau_names in entries.items():
            parent = pdg_of(parent_name)
            dau = [pdg_of(d) for d in dau_names]
            targets = {parent: dau, conj_of(parent): [conj_of(x) for x in dau]}
            for p, d in targets.items() if conj_of(parent) != parent else [(parent, dau)]:
                i = ptype[p]
                matching = [r for r, (_, dd, _) in enumerate(decays[p]) if dd == d]
                if not matching:
                    raise ValueError(f"forced decay {parent_name} -> {dau_names} is not in the table")
                arr[i] = mode_start[i] + matching[0]
        forced[sample] = arr
    return DecayTable(tables=tables, names=names, index=index, forced=forced)


PSMAX_BODIES = 3  # estimate the GENBOD maximum weight for decays into >= 3 bodies
PSMAX_TRIALS = 20_000
PSMAX_MARGIN = 1.5  # safety factor over the largest weight seen (EvtGen-style probmax)


def _phase_space_maxima(mode_start, mode_count, dau_start, dau_count, daughters, mass_hi, mass_lo) -> np.ndarray:
    """Per mode, an estimated maximum GENBOD weight for many-body decays (0: analytic bound).

    The estimate uses the heaviest parent and the lightest daughters allowed by the
    Breit-Wigner windows, where the phase-space weight is largest; the fixed
    numba seed makes it, and hence the generated events, reproducible.
    """
    psmax = np.zeros(len(dau_start))
    for parent in range(len(mode_start)):
        for row in range(mode_start[parent], mode_start[parent] + mode_count[parent]):
            n = int(dau_count[row])
            if n < PSMAX_BODIES:
                continue
            masses = mass_lo[daughters[dau_start[row] : dau_start[row] + n]].astype(np.float64)
            psmax[row] = PSMAX_MARGIN * estimate_max_weight(float(mass_hi[parent]), masses, n, PSMAX_TRIALS, 12345 + row)
    return psmax


def _padded(rows: list, dtype) -> np.ndarray:
    """Rectangular array from ragged rows, padding with each row's last entry."""
    width = max(len(r) for r in rows)
    return np.array([list(r) + [r[-1]] * (width - len(r)) for r in rows], dtype=dtype)


def _name(pdgid: int, pseudo: dict) -> str:
    for name, v in pseudo.items():
        if int(v["pdgid"]) == pdgid:
            return name
    return Particle.from_pdgid(pdgid).evtgen_name
