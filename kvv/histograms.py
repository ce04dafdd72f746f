"""hist histograms of the analysis: fit templates per region and control distributions.

Every histogram is booked with the full, fixed list of samples and variations,
so histograms from any chunk, worker or executor add bin by bin. While chunks
are processed and merged, a histogram is a :class:`SumHistogram`: its sums are
integers, which add exactly in any order, so the merged histograms are the same
bits whatever the chunk size, the worker count or the order of the merge. It
becomes a ``hist.Hist`` once, after the merge (:func:`to_hist`).
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import boost_histogram as bh
import hist
import numpy as np
import uproot

from kvv import systematics
from kvv.config import AnalysisConfig, ControlHistogram, Region
from kvv.config import systematics as systematics_config

if TYPE_CHECKING:
    from hist.basehist import InnerIndexing

NOMINAL = "nominal"

#: a sample's weights are rounded to multiples of 2**-W_BITS, its squared weights to multiples
#: of 2**-W2_BITS, of its scale (the power of two at or above its per-event weight), far
#: below any physics precision; the sums are exact integers of two int64 limbs
W_BITS, W2_BITS = 48, 64
#: the largest per-event weight accepted, relative to the scale (the limbs' headroom)
MAX_RELATIVE_WEIGHT = 2.0**15
_LIMB = 2.0**32


def weight_unit(scale: float) -> float:
    """The fixed-point unit of the weights of a sample whose per-event weight is about ``scale``: a power of two."""
    return 2.0 ** (math.frexp(abs(scale))[1] - W_BITS)


class ExactSums:
    """An array of exact integer sums, each ``high * 2**32 + low`` with int64 limbs and 0 <= low < 2**32.

    Integer addition does not depend on the order of its terms: the same
    terms give the same sums in any grouping, so sums made chunk by chunk and
    merged in any order are the same bits.
    """

    def __init__(self, shape: tuple[int, ...]):
        self.high = np.zeros(shape, np.int64)
        self.low = np.zeros(shape, np.int64)

    def add_at(self, index: np.ndarray, values: np.ndarray, what: str) -> None:
        """Add integer-valued floats ``values`` (|v| < 2**94) at the flat bins ``index``."""
        high = np.floor(values / _LIMB)
        low = values - high * _LIMB
        headroom = np.bincount(index, np.abs(high), minlength=self.high.size).reshape(self.high.shape) + np.abs(self.high)
        if np.any(headroom >= 2.0**62):
            raise OverflowError(f"{what}: the sums exceed their 94-bit range")
        np.add.at(self.low.reshape(-1), index, low.astype(np.int64))  # < 2**31 terms of < 2**32 per bin
        np.add.at(self.high.reshape(-1), index, high.astype(np.int64))
        self._carry()

    def _carry(self) -> None:
        carry = self.low >> 32
        self.low -= carry << 32
        self.high += carry

    def __add__(self, other: ExactSums) -> ExactSums:
        out = ExactSums(self.high.shape)
        out.high = self.high + other.high
        if np.any(((self.high ^ out.high) & (other.high ^ out.high)) < 0):
            raise OverflowError("the sums exceed their 94-bit range")
        out.low = self.low + other.low
        out._carry()
        return out

    def to_float(self, unit: float) -> np.ndarray:
        """The sums times ``unit``, as float64 (rounded once, the same bits for the same sums)."""
        return self.high.astype(np.float64) * (unit * _LIMB) + self.low.astype(np.float64) * unit


class SumHistogram:
    """A histogram being filled: per sample, exact sums of weights and of squared weights in units of the sample's scale.

    Floating-point sums depend on the order of their terms, so float histograms
    filled chunk by chunk differ in their last bits with the chunking and with
    the order in which the executor merges. Here each weight and each squared
    weight is rounded once to a multiple of its sample's unit (:func:`weight_unit`)
    and summed as an integer (:class:`ExactSums`): the same events give the same
    sums in any grouping. Bin positions are those of ``hist.Hist.fill`` (flow
    bins, the closed last edge of a flow-less axis). The first axis is the
    sample axis ``dataset``; the values of the others are arrays, or a string
    for a category axis filled with one category.
    """

    def __init__(self, *axes: bh.axis.Axis):
        self.axes = axes
        self.shape = tuple(a.extent for a in axes[1:])
        #: sample -> (unit of w, sums of w / unit, sums of w^2 / unit^2 * 2**(2 W_BITS - W2_BITS))
        self.sums: dict[str, tuple[float, ExactSums, ExactSums]] = {}

    def fill(self, dataset: str, *, weight: np.ndarray | None = None, scale: float = 1.0, **values: np.ndarray | str) -> None:
        """Add events of sample ``dataset`` (unit weights without ``weight``); ``scale``: the sample's per-event weight."""
        index, keep = self._positions(values)
        w = np.ones(len(keep)) if weight is None else np.asarray(weight, dtype=np.float64)
        self._add(dataset, index[keep], w[keep], scale)

    def fill_categories(
        self, dataset: str, axis: str, weights: Mapping[str, np.ndarray], *, scale: float = 1.0, **values: np.ndarray
    ) -> None:
        """:meth:`fill` the same events once per category of the category axis ``axis``, with the weights ``weights[category]``.

        The variations of a template share their events and differ in weights
        only: their bin positions are found once and added in one pass.
        """
        if not weights:
            return
        names = [a.name for a in self.axes[1:]]
        k = names.index(axis)
        stride = math.prod(self.shape[k + 1 :])
        first, *_ = weights
        index, keep = self._positions({**values, axis: first})
        index = index[keep]
        base = self.axes[k + 1].index(first)  # KeyError for a category the axis was not booked with
        shifts = [(self.axes[k + 1].index(c) - base) * stride for c in weights]
        flat_index = np.concatenate([index + shift for shift in shifts])
        flat_weights = np.concatenate([np.asarray(w, dtype=np.float64)[keep] for w in weights.values()])
        self._add(dataset, flat_index, flat_weights, scale)

    def _positions(self, values: Mapping[str, np.ndarray | str]) -> tuple[np.ndarray, np.ndarray]:
        """Each event's flat bin index over the axes after the sample axis, and whether ``Hist.fill`` keeps it."""
        n = next(len(v) for v in values.values() if not isinstance(v, str))
        index = np.zeros(n, dtype=np.int64)
        keep = np.ones(n, dtype=bool)
        for axis, extent in zip(self.axes[1:], self.shape, strict=True):
            position, kept = _flow_positions(axis, values[axis.name])
            index = index * extent + position
            keep &= kept
        return index, keep

    def _add(self, dataset: str, index: np.ndarray, w: np.ndarray, scale: float) -> None:
        """Add the weights ``w`` at the flat bins ``index`` of sample ``dataset``."""
        unit = weight_unit(scale)
        if len(w) and not np.abs(w).max() <= MAX_RELATIVE_WEIGHT * unit * 2.0**W_BITS:
            raise ValueError(f"sample {dataset}: weights up to {np.abs(w).max():g} are more than 2**15 times its scale {scale:g}")
        sumw, sumw2 = self._sums(dataset, unit)
        sumw.add_at(index, np.rint(w / unit), f"sample {dataset}")
        sumw2.add_at(index, np.rint(w * w / _unit2(unit)), f"sample {dataset}")

    def _sums(self, dataset: str, unit: float) -> tuple[ExactSums, ExactSums]:
        if dataset not in self.sums:
            self.axes[0].index(dataset)  # KeyError for a sample the histogram was not booked with
            self.sums[dataset] = (unit, ExactSums(self.shape), ExactSums(self.shape))
        held, sumw, sumw2 = self.sums[dataset]
        if held != unit:
            raise ValueError(f"sample {dataset}: filled with weight scales of different units ({held:g}, {unit:g})")
        return sumw, sumw2

    def __add__(self, other: SumHistogram) -> SumHistogram:
        out = SumHistogram(*self.axes)
        out.sums = dict(self.sums)
        return out.__iadd__(other)

    def __iadd__(self, other: SumHistogram) -> SumHistogram:
        for dataset, (unit, sumw, sumw2) in other.sums.items():
            if dataset not in self.sums:
                self.sums[dataset] = (unit, sumw, sumw2)  # ExactSums are never changed in place once merged
                continue
            held, mine, mine2 = self.sums[dataset]
            if held != unit:
                raise ValueError(f"sample {dataset}: merging sums of different units ({held:g}, {unit:g})")
            self.sums[dataset] = (unit, mine + sumw, mine2 + sumw2)
        return self

    def to_hist(self) -> hist.Hist:
        """The ``hist.Hist`` (Weight storage) of the sums."""
        h = hist.Hist(*self.axes, storage=hist.storage.Weight())
        view = h.view(flow=True)
        for dataset, (unit, sumw, sumw2) in self.sums.items():
            i = self.axes[0].index(dataset)
            view[i]["value"] = sumw.to_float(unit)
            view[i]["variance"] = sumw2.to_float(_unit2(unit))
        return h


def _unit2(unit: float) -> float:
    """The unit of the squared weights for the weight unit ``unit``."""
    return unit * unit * 2.0 ** (2 * W_BITS - W2_BITS)


def _flow_positions(axis: bh.axis.Axis, values: np.ndarray | str) -> tuple[np.ndarray, np.ndarray]:
    """Each value's index in the axis's flow view, and whether ``Hist.fill`` keeps it."""
    if isinstance(values, str):  # one category for all events
        return np.asarray(axis.index(values)), np.asarray(True)
    if isinstance(axis, hist.axis.IntCategory):  # its index() raises for a value it does not hold; fill books it as overflow
        found = np.asarray(values)[:, None] == np.asarray(list(axis))[None, :]
        index = np.where(found.any(axis=1), found.argmax(axis=1), len(axis))
    else:  # index() is vectorised, though boost-histogram's annotations name scalars only
        index = np.asarray(axis.index(values))  # type: ignore[arg-type]
    keep = ((index >= 0) | axis.traits.underflow) & ((index < len(axis)) | axis.traits.overflow)
    return index + int(axis.traits.underflow), keep


def to_hist(histograms: Mapping[str, SumHistogram]) -> dict[str, hist.Hist]:
    """The merged :class:`SumHistogram` objects of a group as ``hist.Hist``."""
    return {name: h.to_hist() for name, h in histograms.items()}


def project(h: hist.Hist, index: Mapping[int | str, InnerIndexing]) -> hist.Hist:
    """``h[index]`` for an index that keeps at least one axis: a histogram, not one bin's content."""
    out = h[index]
    if not isinstance(out, hist.Hist):
        raise TypeError(f"{dict(index)} selects a single bin, not a histogram")
    return out


def variances_of(h: hist.Hist) -> np.ndarray:
    """Per-bin variances; kvv's histograms have Weight storage, which always keeps them."""
    out = h.variances()
    if out is None:
        raise TypeError("the histogram's storage keeps no variances")
    return out


def nuisance_names(cfg: AnalysisConfig) -> list[str]:
    """Every systematic variation of the templates, one name per nuisance parameter."""
    return [v.name for v in cfg.variations] + systematics_config.nuisance_names(cfg.systematics)


def variation_names(cfg: AnalysisConfig) -> list[str]:
    """Nominal first, then ``<name>_up`` / ``<name>_down`` of every nuisance."""
    return [NOMINAL] + [f"{name}_{side}" for name in nuisance_names(cfg) for side in ("up", "down")]


def complete_mirrored(templates: Mapping[str, hist.Hist], cfg: AnalysisConfig) -> None:
    """Fill the unrun side of one-sided object variations as 2 nominal - varied (after merging)."""
    for h in templates.values():
        for missing, computed in systematics.mirrored(cfg.systematics).items():
            for sample in h.axes["dataset"]:
                nominal = project(h, {"dataset": sample, "variation": NOMINAL}).values()
                varied = project(h, {"dataset": sample, "variation": computed}).values()
                mirrored = systematics.mirror(nominal, varied)
                view = h.view()
                index = (h.axes["dataset"].index(sample), h.axes["variation"].index(missing))
                view[index]["value"] = mirrored
                # the mirrored template has the statistical precision of the varied one
                view[index]["variance"] = variances_of(project(h, {"dataset": sample, "variation": computed}))


def _sample_axis(cfg: AnalysisConfig) -> hist.axis.StrCategory:
    return hist.axis.StrCategory([s.name for s in cfg.samples], name="dataset")


def template_histogram(cfg: AnalysisConfig, region: Region) -> SumHistogram:
    """Empty template histogram of a region: dataset (sample) x variation x fit variables.

    The sample axis is called ``dataset`` because ``sample`` is a keyword of ``Hist.fill``.
    """
    axes: list[bh.axis.Axis] = [_sample_axis(cfg), hist.axis.StrCategory(variation_names(cfg), name="variation")]
    axes += [hist.axis.Variable(a.edges, name=a.variable, label=a.label or a.variable, flow=False) for a in region.axes]
    return SumHistogram(*axes)


def control_histogram(cfg: AnalysisConfig, control: ControlHistogram) -> SumHistogram:
    """Empty control histogram: sample (x split category) x one variable, with flow bins."""
    split = [] if control.split_by is None else [hist.axis.IntCategory(list(control.categories), name=control.split_by)]
    return SumHistogram(
        _sample_axis(cfg),
        *split,
        hist.axis.Regular(control.bins, control.start, control.stop, name=control.variable, label=control.label or control.variable),
    )


def _q2_gen_axis(cfg: AnalysisConfig) -> hist.axis.Variable:
    return hist.axis.Variable(cfg.publication.q2_gen_edges, name="q2_gen", label=r"$q^2_{gen}$ [GeV$^2$/c$^4$]")


def density_histogram(cfg: AnalysisConfig, region: Region) -> SumHistogram:
    """Empty joint number density of a region: signal sample x generated q² (with flow bins) x the fit variables.

    Summed over generated q², it is the region's nominal signal template, bin by bin.
    """
    axes: list[bh.axis.Axis] = [_sample_axis(cfg), _q2_gen_axis(cfg)]
    axes += [hist.axis.Variable(a.edges, name=a.variable, label=a.label or a.variable, flow=False) for a in region.axes]
    return SumHistogram(*axes)


def book(cfg: AnalysisConfig) -> dict[str, dict[str, SumHistogram]]:
    """All histograms of an analysis, empty: ``{"templates": {region: h}, "controls": {var: h}, "densities": {region: h},
    "generated": {"q2_gen": h}}``; the last two are filled for signal MC only (the reinterpretation material)."""
    return {
        "templates": {r.name: template_histogram(cfg, r) for r in cfg.regions},
        "controls": {c.key: control_histogram(cfg, c) for c in cfg.controls},
        "densities": {r.name: density_histogram(cfg, r) for r in cfg.regions},
        "generated": {"q2_gen": SumHistogram(_sample_axis(cfg), _q2_gen_axis(cfg))},
    }


def fill_templates(
    h: SumHistogram,
    region: Region,
    sample: str,
    weights: Mapping[str, np.ndarray],
    columns: Mapping[str, np.ndarray],
    scale: float,
) -> None:
    """Fill one region's template with the events given (already selected), once per variation: ``weights[variation]``.

    ``scale``: the sample's per-event weight. The fit axes have no flow bins, so
    their last edge is closed: a BDT2 score of exactly 1.0 (float32) is in the last bin.
    """
    h.fill_categories(sample, "variation", weights, **{a.variable: columns[a.variable] for a in region.axes}, scale=scale)


def templates_for_fit(
    templates: Mapping[str, hist.Hist], cfg: AnalysisConfig, observed_samples: Collection[str] = ()
) -> tuple[dict[str, dict[str, dict]], dict[str, np.ndarray]]:
    """Merge samples into fit templates per region, flattening the fit variables.

    Returns ``({region: {template: {"yields", "sumw2", "variations"}}}, {region: observed})``.
    Only the data samples named in ``observed_samples`` (real, unweighted data)
    give observations; prescaled pseudo-data cannot stand in a Poisson term.
    """
    out: dict[str, dict[str, dict]] = {}
    observed: dict[str, np.ndarray] = {}
    varied = nuisance_names(cfg)
    for region in cfg.regions:
        h = templates[region.name]
        per_template: dict[str, dict] = {}
        for sample in cfg.samples:
            if sample.resonance != region.resonance:
                continue
            view = project(h, {"dataset": sample.name})
            nominal = project(view, {"variation": NOMINAL})
            yields = np.ravel(nominal.values())
            if sample.is_data:
                if sample.name in observed_samples:
                    observed[region.name] = observed.get(region.name, 0) + yields
                continue
            entry = per_template.setdefault(
                sample.template,
                {"yields": 0.0, "sumw2": 0.0, "variations": {v: {"up": 0.0, "down": 0.0} for v in varied}},
            )
            entry["yields"] = entry["yields"] + yields
            entry["sumw2"] = entry["sumw2"] + np.ravel(variances_of(nominal))
            for v in varied:
                for side in ("up", "down"):
                    entry["variations"][v][side] = entry["variations"][v][side] + np.ravel(
                        project(view, {"variation": f"{v}_{side}"}).values()
                    )
        out[region.name] = per_template
    return out, observed


def prune_empty_bins(
    templates: dict[str, dict[str, dict]], observed: dict[str, np.ndarray]
) -> tuple[dict[str, dict[str, dict]], dict[str, np.ndarray], dict[str, list[int]]]:
    """Drop bins (and whole regions) where no template expects any event.

    A bin with zero expectation carries no information and makes the Poisson
    likelihood singular; returns the kept templates and observations and the
    indices of the dropped bins per region (to be reported).
    """
    kept, kept_obs, pruned = {}, {}, {}
    for region, samples in templates.items():
        total = sum(np.asarray(t["yields"], dtype=float) for t in samples.values())
        keep = np.atleast_1d(total > 0)
        if not keep.all():
            pruned[region] = np.flatnonzero(~keep).tolist()
        if not keep.any():
            continue
        kept[region] = {name: _select_bins(t, keep) for name, t in samples.items()}
        if region in observed:
            kept_obs[region] = np.asarray(observed[region])[keep]
    return kept, kept_obs, pruned


def floor_empty_background(
    templates: dict[str, dict[str, dict]], signal: str, event_weight: Mapping[str, Mapping[str, float]]
) -> dict[str, list[int]]:
    """Give bins that expect signal but no background one MC event of background; in place.

    Zero MC events of weight w only say that the background is below about w
    (the mean of the flat-prior Poisson posterior of zero counts is one event):
    claiming exactly zero would make any signal there infinitely significant.
    The event goes to the background template with the smallest per-event
    weight in ``event_weight[region]``, with a 100 % MC-statistical uncertainty and
    no systematic variation. Returns the floored bins per region.
    """
    floored: dict[str, list[int]] = {}
    for region, samples in templates.items():
        weights = event_weight.get(region, {})
        backgrounds = [name for name in samples if name != signal and name in weights]
        if signal not in samples or not backgrounds:
            continue
        background = sum(np.asarray(samples[name]["yields"], dtype=float) for name in backgrounds)
        empty = (background <= 0) & (np.asarray(samples[signal]["yields"], dtype=float) > 0)
        if not empty.any():
            continue
        target = min(backgrounds, key=lambda name: weights[name])
        w = float(weights[target])
        t = samples[target]
        t["yields"] = np.where(empty, w, np.asarray(t["yields"], dtype=float))
        t["sumw2"] = np.where(empty, w * w, np.asarray(t["sumw2"], dtype=float))
        for v in t.get("variations", {}).values():
            for side in ("up", "down"):
                v[side] = np.where(empty, w, np.asarray(v[side], dtype=float))
        floored[region] = np.flatnonzero(empty).tolist()
    return floored


def _select_bins(template: dict, keep: np.ndarray) -> dict:
    return {
        "yields": np.asarray(template["yields"])[keep],
        "sumw2": np.asarray(template["sumw2"])[keep],
        "variations": {name: {side: np.asarray(v[side])[keep] for side in ("up", "down")} for name, v in template["variations"].items()},
    }


def save_pickle(histograms: Mapping, path: Path) -> None:
    """Lossless Python form of the merged histograms (hist objects pickle exactly)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as f:
        pickle.dump(dict(histograms), f, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(path)


def load_pickle(path: Path) -> dict:
    with open(path, "rb") as f:
        return pickle.load(f)


def save_root(histograms: Mapping[str, Mapping[str, hist.Hist]], path: Path) -> None:
    """One TH1/TH2 per (group, histogram, sample, category...), named ``group/name/sample/category...``.

    Category axes (``dataset``, ``variation``, a control's split) become path components.
    """
    tmp = path.with_suffix(".tmp.root")
    with uproot.recreate(tmp) as f:
        for group, hists in histograms.items():
            for name, h in hists.items():
                for key, view in _category_slices(h):
                    f["/".join((group, name, *key))] = view
    tmp.replace(path)


def _category_slices(h: hist.Hist) -> list[tuple[tuple[str, ...], hist.Hist]]:
    """Every combination of the category axes' values, as (path components, view)."""
    categorical = [a for a in h.axes if isinstance(a, (hist.axis.StrCategory, hist.axis.IntCategory))]
    if not categorical:
        return [((), h)]
    axis = categorical[0]
    return [
        ((str(value), *key), view)
        for value in axis
        # a category axis iterates its categories (str or int); hist types every axis's items as edges too
        for key, view in _category_slices(project(h, {axis.name: hist.loc(value)}))  # type: ignore[arg-type]
    ]
