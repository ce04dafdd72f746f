"""Event generator: e+e- -> Upsilon(4S) -> B Bbar, q qbar continuum and tau pairs.

Every event starts from the e+e- system: the HER and LER four-momenta of
``kvv.physics.beams``, each scaled by a Gaussian energy factor (the beams' energy
spreads), summed into the event's initial state. It decays in its rest frame -
the CMS frame of ``kvv.physics.beams`` up to the spread - and all daughters are boosted
straight into the lab, so lab momenta and decay vertices come out directly. Unstable particles decay through the decay table
(``decays.yaml``) by phase space, until only stable particles are left.

Continuum model (e+e- -> q qbar): the quark and the antiquark each become a
"string" (PDG code 92) made of a leading hadron containing the primary quark
(charm strings: a D meson; strange strings: a kaon, K* or phi) plus a Poisson
number of charge-neutral hadron groups (pi+pi-, pi0, rho pi, eta, K K, p pbar ...,
see ``fragmentation`` in ``decays.yaml``). A charge left over by the two leading
hadrons is balanced by one extra charged pion. In the string rest frame the
hadrons get isotropic momenta of exponential magnitude (mean ``pt_scale``),
shifted to zero total momentum; the string mass is then the sum of the hadron
energies. The two strings fly back to back along a 1 + cos^2(theta) distribution
about the collision axis (resampled until both fit into sqrt(s)), so momenta
transverse to the jet axis are limited by ``pt_scale`` and energy and momentum
are exactly conserved. Tune knobs (``DEFAULT_TUNE``): ``units_per_string`` (mean
number of neutral groups per string, i.e. the multiplicity) and ``pt_scale`` (GeV).

Simplifications (documented, not bugs): no B0 mixing, no CP violation, no ISR or FSR,
no Upsilon(4S) line shape (sqrt(s) follows the beam-energy spread alone),
phase space for all but the signal B -> K nu nubar decay (SM q^2 spectrum),
Breit-Wigner masses without phase-space weighting, charged pions/kaons do not
decay in flight, no material interactions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from kvv.eventformat import Process
from kvv.physics.beams import Beams
from kvv.physics.formfactors import phase_space_weight
from kvv.physics.kinematics import invariant_mass
from kvv.simulate.decaytable import FLAVOURS, Tables, load_decay_table
from kvv.simulate.phasespace import (
    boost_in_place,
    breit_wigner,
    direction_about_axis,
    genbod,
    random_direction,
    sample_cos_theta,
    two_body,
)

DEFAULT_TUNE = {"units_per_string": 1.6, "pt_scale": 0.30}
MAX_PARTICLES = 600  # per event, all generations (a B Bbar event needs ~60)
MAX_DAUGHTERS = 64  # per decay or string


@dataclass(frozen=True)
class ProcessSpec:
    """How a process is generated: root particle, forced decays, string flavour."""

    root: str
    forced: str | None
    flavour: str | None = None


PROCESS_SPECS: dict[Process, ProcessSpec] = {
    Process.CHARGED: ProcessSpec("Upsilon(4S)", "charged"),
    Process.MIXED: ProcessSpec("Upsilon(4S)", "mixed"),
    Process.UUBAR: ProcessSpec("vpho", None, "u"),
    Process.DDBAR: ProcessSpec("vpho", None, "d"),
    Process.SSBAR: ProcessSpec("vpho", None, "s"),
    Process.CCBAR: ProcessSpec("vpho", None, "c"),
    Process.TAUPAIR: ProcessSpec("vpho", "taupair"),
    Process.KNUNU: ProcessSpec("Upsilon(4S)", "knunu"),
    Process.KSTAR0NUNU: ProcessSpec("Upsilon(4S)", "kstar0nunu"),
    Process.KSTARPNUNU: ProcessSpec("Upsilon(4S)", "kstarpnunu"),
    Process.JPSIK: ProcessSpec("Upsilon(4S)", "jpsik"),
}


@dataclass(frozen=True)
class GeneratedEvents:
    """Stable generator-level particles of a batch, lab frame, flat per event.

    Particles of event i are rows ``offsets[i]:offsets[i + 1]``; ``p4`` is
    (E, px, py, pz) in GeV, ``vertex`` the production point in cm.
    """

    offsets: np.ndarray
    pdg: np.ndarray
    mother_pdg: np.ndarray
    p4: np.ndarray
    vertex: np.ndarray
    b_modes: np.ndarray  # (n_events, 2): mode index of the B (B+ or B0) and the Bbar, -1 if none
    b_p4: np.ndarray  # (n_events, 2, 4): lab four-momenta of the B and the Bbar, NaN if none
    q2: np.ndarray  # generated dineutrino q^2 of a B -> K(*) nu nubar decay, -1 if none
    initial_p4: np.ndarray  # (n_events, 4): lab four-momentum of the e+e- system of each event

    @property
    def n_events(self) -> int:
        return len(self.offsets) - 1


def generate_events(process: Process, n_events: int, *, beams: Beams, seed: int, tune: dict | None = None) -> GeneratedEvents:
    """Generate ``n_events`` events of ``process``; a pure function of its arguments."""
    spec = PROCESS_SPECS.get(Process(process))
    if spec is None:
        raise ValueError(f"process {process!r} cannot be generated")
    table = load_decay_table()
    t = table.tables
    root = table.ptype(spec.root)
    # the beam-energy spread must not take an event below the B Bbar threshold
    threshold = 2.0 * max(t.mass[table.ptype("B+")], t.mass[table.ptype("B0")]) if spec.root == "Upsilon(4S)" else 0.0
    if beams.sqrt_s <= threshold:
        raise ValueError(f"sqrt(s) = {beams.sqrt_s} GeV is below the B Bbar threshold")
    knobs = {**DEFAULT_TUNE, **(tune or {})}
    forced = table.forced[spec.forced] if spec.forced else np.full(len(t.pdg), -1, dtype=np.int64)
    flavour = FLAVOURS.index(spec.flavour) if spec.flavour else -1
    offsets, ints, floats, b_modes, b_p4, q2, initial_p4 = _generate_kernel(
        n_events,
        root,
        flavour,
        t,
        forced,
        float(knobs["units_per_string"]),
        float(knobs["pt_scale"]),
        table.ptype("pi+"),
        table.ptype("string"),
        np.asarray(beams.her, dtype=np.float64),
        np.asarray(beams.ler, dtype=np.float64),
        beams.her_energy_spread / beams.her_energy,
        beams.ler_energy_spread / beams.ler_energy,
        threshold,
        np.asarray(beams.collision_axis_cms, dtype=np.float64),
        _kernel_seed(seed),
    )
    return GeneratedEvents(
        offsets=offsets,
        pdg=ints[:, 0],
        mother_pdg=ints[:, 1],
        p4=floats[:, :4],
        vertex=floats[:, 4:],
        b_modes=b_modes,
        b_p4=b_p4,
        q2=q2,
        initial_p4=initial_p4,
    )


def _kernel_seed(seed: int) -> int:
    """32-bit seed for numba's Mersenne twister from an arbitrary integer seed."""
    return int(np.random.SeedSequence(seed).generate_state(1, dtype=np.uint32)[0])


def four_momentum_balance(events: GeneratedEvents) -> np.ndarray:
    """Per event, max |sum of stable-particle four-momenta - initial state| / sqrt(s)."""
    sums = np.add.reduceat(events.p4, events.offsets[:-1], axis=0)
    return np.max(np.abs(sums - events.initial_p4), axis=1) / invariant_mass(events.initial_p4)


@njit(cache=True, inline="always")
def _choose_mode(t: Tables, ptype: int) -> int:
    u = np.random.random()
    start = t.mode_start[ptype]
    for row in range(start, start + t.mode_count[ptype]):
        if u < t.mode_cum[row]:
            return row
    return start + t.mode_count[ptype] - 1


@njit(cache=True, inline="always")
def _sample_mass(t: Tables, ptype: int) -> float:
    if t.width[ptype] == 0.0:
        return t.mass[ptype]
    return breit_wigner(t.mass[ptype], t.width[ptype], t.mass_lo[ptype], t.mass_hi[ptype])


@njit(cache=True, inline="always")
def _push(st_type, st_p4, st_vtx, st_mass, st_mother, st_signal, st_mode, n, ptype, p4, row, vtx, mass, mother, signal):
    """Append one particle (four-momentum: row ``row`` of ``p4``; vertex: ``vtx``) to the event record; returns the new length."""
    if n >= MAX_PARTICLES:
        raise RuntimeError("event record overflow")
    st_type[n] = ptype
    st_p4[n, 0], st_p4[n, 1], st_p4[n, 2], st_p4[n, 3] = p4[row, 0], p4[row, 1], p4[row, 2], p4[row, 3]
    st_vtx[n, 0], st_vtx[n, 1], st_vtx[n, 2] = vtx[0], vtx[1], vtx[2]
    st_mass[n] = mass
    st_mother[n] = mother
    st_signal[n] = signal
    st_mode[n] = -1
    return n + 1


@njit(cache=True, inline="always")
def _decay_vertex(t: Tables, st_p4: np.ndarray, st_vtx: np.ndarray, j: int, ptype: int, mass: float, out: np.ndarray) -> None:
    """Record entry j's production vertex + exponential flight of mean beta*gamma*c*tau along its momentum, into ``out``."""
    out[0], out[1], out[2] = st_vtx[j, 0], st_vtx[j, 1], st_vtx[j, 2]
    if t.ctau[ptype] > 0.0:
        flight = t.ctau[ptype] * np.random.exponential(1.0) / mass  # times |p| below
        out[0] += flight * st_p4[j, 1]
        out[1] += flight * st_p4[j, 2]
        out[2] += flight * st_p4[j, 3]


@njit(cache=True, inline="always")
def _decay(t: Tables, forced, rec, j, n, axis, work, scratch, vertex, ptypes, masses, signal_of, q2_out):
    """Decay record entry j through the table; returns the new record length."""
    st_type, st_p4, st_vtx, st_mass, st_mother, st_signal, st_mode = rec
    par = st_type[j]
    m = st_mass[j]
    forced_row = forced[par] if st_signal[j] else -1
    row = -1
    nd = 0
    for _ in range(1000):
        row = forced_row if forced_row >= 0 else _choose_mode(t, par)
        nd = t.dau_count[row]
        fits = False
        for _ in range(100):
            msum = 0.0
            for d in range(nd):
                ptypes[d] = t.daughters[t.dau_start[row] + d]
                masses[d] = _sample_mass(t, ptypes[d])
                msum += masses[d]
            if msum < m or nd == 1:  # a one-body "decay" (K0 -> K0S) keeps the parent mass
                fits = True
                break
        if fits:
            break
    else:
        raise RuntimeError("no kinematically allowed decay mode")
    st_mode[j] = row
    model = t.mode_model[row]
    if nd == 1:
        masses[0] = m
        work[0, 0] = m
        work[0, 1:] = 0.0
    elif model >= 2:  # VSS / VLL: angular distribution about the collision axis
        nx, ny, nz = direction_about_axis(axis, sample_cos_theta(model))
        two_body(m, masses[0], masses[1], nx, ny, nz, work)
    elif model == 1:  # BKNUNU: SM q^2 spectrum by accept-reject on phase space
        while True:
            genbod(m, masses, nd, work, t.mode_psmax[row], scratch)
            q2 = _pair_mass2(work, 1, 2)
            if phase_space_weight(q2, m, masses[0]) >= np.random.random() * t.mode_wmax[row]:
                break
    else:
        genbod(m, masses, nd, work, t.mode_psmax[row], scratch)
    if t.mode_signal[row]:
        q2_out[0] = _pair_mass2(work, 1, 2)
    for d in range(nd):
        signal_of[d] = st_signal[j]
    if j == 0 and nd == 2:  # only one B of the pair is the signal side
        first = np.random.random() < 0.5
        signal_of[0] = st_signal[j] and first
        signal_of[1] = st_signal[j] and not first
    # flight of the parent sets the production vertex of its daughters
    _decay_vertex(t, st_p4, st_vtx, j, par, m, vertex)
    bx, by, bz = st_p4[j, 1] / st_p4[j, 0], st_p4[j, 2] / st_p4[j, 0], st_p4[j, 3] / st_p4[j, 0]
    for d in range(nd):
        boost_in_place(work, d, bx, by, bz)
        n = _push(st_type, st_p4, st_vtx, st_mass, st_mother, st_signal, st_mode, n, ptypes[d], work, d, vertex, masses[d], j, signal_of[d])
    return n


@njit(cache=True, inline="always")
def _pair_mass2(work: np.ndarray, a: int, b: int) -> float:
    e = work[a, 0] + work[b, 0]
    px = work[a, 1] + work[b, 1]
    py = work[a, 2] + work[b, 2]
    pz = work[a, 3] + work[b, 3]
    return e * e - px * px - py * py - pz * pz


@njit(cache=True, inline="always")
def _string_hadrons(t: Tables, flavour: int, anti: bool, units_mean: float, out: np.ndarray) -> int:
    """Hadron ptypes of one string: leading hadron of the (anti)quark plus neutral units."""
    u = np.random.random()
    k = 0
    while k < t.lead_cum.shape[1] - 1 and u >= t.lead_cum[flavour, k]:
        k += 1
    n = _append_group(t, t.lead_group[flavour, k], anti, out, 0)
    for _ in range(np.random.poisson(units_mean)):
        u = np.random.random()
        g = 0
        while g < len(t.unit_cum) - 1 and u >= t.unit_cum[g]:
            g += 1
        if n + t.group_count[t.unit_group[g]] < MAX_DAUGHTERS - 2:
            n = _append_group(t, t.unit_group[g], anti, out, n)
    return n


@njit(cache=True, inline="always")
def _append_group(t: Tables, group: int, anti: bool, out: np.ndarray, n: int) -> int:
    for i in range(t.group_count[group]):
        member = t.group_members[t.group_start[group] + i]
        out[n] = t.conj[member] if anti else member
        n += 1
    return n


@njit(cache=True, inline="always")
def _string_momenta(t: Tables, hadrons: np.ndarray, n: int, pt_scale: float, mass: np.ndarray, p4: np.ndarray) -> float:
    """Hadron four-momenta in the string rest frame; returns the string mass.

    Momenta are isotropic with exponential magnitude (mean ``pt_scale``), then
    shifted by their mean so that they sum to zero; the string mass is the sum of
    the hadron energies, so energy and momentum are conserved by construction.
    """
    sx = sy = sz = 0.0
    for h in range(n):
        mass[h] = _sample_mass(t, hadrons[h])
        nx, ny, nz = random_direction()
        p = pt_scale * np.random.exponential(1.0)
        p4[h, 1], p4[h, 2], p4[h, 3] = p * nx, p * ny, p * nz
        sx += p4[h, 1]
        sy += p4[h, 2]
        sz += p4[h, 3]
    total = 0.0
    for h in range(n):
        p4[h, 1] -= sx / n
        p4[h, 2] -= sy / n
        p4[h, 3] -= sz / n
        p4[h, 0] = math.sqrt(mass[h] ** 2 + p4[h, 1] ** 2 + p4[h, 2] ** 2 + p4[h, 3] ** 2)
        total += p4[h, 0]
    return total


@njit(cache=True, inline="always")
def _fragment(t: Tables, rec, flavour, units_mean, pt_scale, pion, string, axis, work, hadrons, hmass, hp4, counts, smass):
    """e+e- -> q qbar: two strings back to back, each made of its hadrons; returns record length."""
    st_type, st_p4, st_vtx, st_mass, st_mother, st_signal, st_mode = rec
    sqrt_s = st_mass[0]
    while True:
        counts[0] = _string_hadrons(t, flavour, False, units_mean, hadrons[0])
        counts[1] = _string_hadrons(t, flavour, True, units_mean, hadrons[1])
        charge = 0
        for s in range(2):
            for h in range(counts[s]):
                charge += t.charge[hadrons[s, h]]
        while charge != 0:  # balance the leading hadrons' charges with a pion
            s = 0 if counts[0] <= counts[1] else 1
            hadrons[s, counts[s]] = t.conj[pion] if charge > 0 else pion
            counts[s] += 1
            charge += -1 if charge > 0 else 1
        for s in range(2):
            smass[s] = _string_momenta(t, hadrons[s], counts[s], pt_scale, hmass[s], hp4[s])
        if smass[0] + smass[1] < sqrt_s:
            break
    st_mode[0] = -2  # decayed by fragmentation
    nx, ny, nz = direction_about_axis(axis, sample_cos_theta(3))
    two_body(sqrt_s, smass[0], smass[1], nx, ny, nz, work)
    n = 1
    origin = st_vtx[0]
    for s in range(2):
        boost_in_place(work, s, st_p4[0, 1] / st_p4[0, 0], st_p4[0, 2] / st_p4[0, 0], st_p4[0, 3] / st_p4[0, 0])
        n = _push(st_type, st_p4, st_vtx, st_mass, st_mother, st_signal, st_mode, n, string, work, s, origin, smass[s], 0, False)
        st_mode[n - 1] = -2
    for s in range(2):
        j = 1 + s
        bx, by, bz = st_p4[j, 1] / st_p4[j, 0], st_p4[j, 2] / st_p4[j, 0], st_p4[j, 3] / st_p4[j, 0]
        string_p4 = hp4[s]
        for h in range(counts[s]):
            boost_in_place(string_p4, h, bx, by, bz)
            n = _push(
                st_type,
                st_p4,
                st_vtx,
                st_mass,
                st_mother,
                st_signal,
                st_mode,
                n,
                hadrons[s, h],
                string_p4,
                h,
                origin,
                hmass[s, h],
                j,
                False,
            )
    return n


@njit(cache=True, inline="always")
def _grow(a: np.ndarray, rows: int) -> np.ndarray:
    out = np.empty((rows, a.shape[1]), a.dtype)
    out[: a.shape[0]] = a
    return out


@njit(cache=True)
def _generate_kernel(
    n_events, root, flavour, t, forced, units_mean, pt_scale, pion, string, her, ler, her_spread, ler_spread, threshold, axis, seed
):
    """Generate n_events; returns offsets, (pdg, mother pdg), (E, p, vertex), B modes and p4, q^2, initial p4.

    ``her``/``ler`` are the nominal beam four-momenta, ``*_spread`` their relative
    energy spreads: each event's initial state is her * (1 + her_spread * N(0, 1))
    + ler * (1 + ler_spread * N(0, 1)) (massless beams keep their directions),
    redrawn while its mass is not above ``threshold``.
    """
    np.random.seed(seed)
    cap = n_events * 40
    ints = np.empty((cap, 2), np.int32)
    floats = np.empty((cap, 7))
    offsets = np.zeros(n_events + 1, np.int64)
    b_modes = np.full((n_events, 2), -1, np.int32)
    b_p4 = np.full((n_events, 2, 4), np.nan)
    q2 = np.full(n_events, -1.0)
    initial_p4 = np.empty((n_events, 4))
    rec = (
        np.empty(MAX_PARTICLES, np.int64),
        np.empty((MAX_PARTICLES, 4)),
        np.zeros((MAX_PARTICLES, 3)),
        np.empty(MAX_PARTICLES),
        np.empty(MAX_PARTICLES, np.int64),
        np.empty(MAX_PARTICLES, np.bool_),
        np.empty(MAX_PARTICLES, np.int64),
    )
    st_type, st_p4, st_vtx, st_mass, st_mother, st_signal, st_mode = rec
    work = np.zeros((MAX_DAUGHTERS, 4))
    scratch = np.empty((2, MAX_DAUGHTERS))  # GENBOD work rows
    vertex = np.empty(3)  # the production vertex of the daughters being pushed
    ptypes = np.empty(MAX_DAUGHTERS, np.int64)
    masses = np.empty(MAX_DAUGHTERS)
    signal_of = np.empty(MAX_DAUGHTERS, np.bool_)
    hadrons = np.empty((2, MAX_DAUGHTERS), np.int64)
    hmass = np.empty((2, MAX_DAUGHTERS))
    hp4 = np.empty((2, MAX_DAUGHTERS, 4))
    q2_ev = np.empty(1)
    nout = 0
    origin = np.zeros(3)
    root_p4 = np.empty((1, 4))
    counts = np.zeros(2, np.int64)
    smass = np.zeros(2)
    for ev in range(n_events):
        while True:
            her_scale = 1.0 + her_spread * np.random.normal()
            ler_scale = 1.0 + ler_spread * np.random.normal()
            for c in range(4):
                root_p4[0, c] = her[c] * her_scale + ler[c] * ler_scale
            root_mass = math.sqrt(root_p4[0, 0] ** 2 - root_p4[0, 1] ** 2 - root_p4[0, 2] ** 2 - root_p4[0, 3] ** 2)
            if root_mass > threshold:
                break
        initial_p4[ev] = root_p4[0]
        n = _push(st_type, st_p4, st_vtx, st_mass, st_mother, st_signal, st_mode, 0, root, root_p4, 0, origin, root_mass, -1, True)
        q2_ev[0] = -1.0
        if flavour >= 0:
            n = _fragment(t, rec, flavour, units_mean, pt_scale, pion, string, axis, work, hadrons, hmass, hp4, counts, smass)
        j = 0
        while j < n:
            if st_mode[j] == -1 and t.mode_count[st_type[j]] > 0:
                n = _decay(t, forced, rec, j, n, axis, work, scratch, vertex, ptypes, masses, signal_of, q2_ev)
            j += 1
        q2[ev] = q2_ev[0]
        if t.pdg[root] == 300553:
            for k in (1, 2):
                slot = 0 if t.pdg[st_type[k]] > 0 else 1
                b_modes[ev, slot] = st_mode[k] - t.mode_start[st_type[k]]
                b_p4[ev, slot] = st_p4[k]
        n_stable = 0
        for k in range(n):
            if st_mode[k] == -1:
                n_stable += 1
        if nout + n_stable > ints.shape[0]:
            new_cap = max(2 * ints.shape[0], nout + n_stable)
            ints = _grow(ints, new_cap)
            floats = _grow(floats, new_cap)
        for k in range(n):
            if st_mode[k] != -1:
                continue
            ints[nout, 0] = t.pdg[st_type[k]]
            mo = st_mother[k]
            ints[nout, 1] = t.pdg[st_type[mo]] if mo >= 0 else 0
            floats[nout, :4] = st_p4[k]
            floats[nout, 4:] = st_vtx[k]
            nout += 1
        offsets[ev + 1] = nout
    return offsets, ints[:nout].copy(), floats[:nout].copy(), b_modes, b_p4, q2, initial_p4
