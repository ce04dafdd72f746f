"""Building pyhf workspaces from plain NumPy templates.

``templates`` is ``{channel: {sample: {"yields": array, "sumw2": array,
"variations": {name: {"up": array, "down": array}}}}}``; templates already
carry their luminosity scaling, so the same normalisation modifier name in the
on- and off-resonance channels is all that is needed to tie the continuum
between them.
"""

from __future__ import annotations

import numpy as np
import pyhf

from kvv.config.fit import FitSettings

from .likelihood import FitError


def _check_config(templates: dict, config: FitSettings, observations: dict | None) -> None:
    """Every sample/channel the configuration names must exist in the templates."""
    samples = {s for channel in templates.values() for s in channel}
    if config.signal_template not in samples:
        raise FitError(f"signal sample '{config.signal_template}' not found in templates (samples: {sorted(samples)})")
    named = list(config.norm_names) + list(config.free_norms)
    if isinstance(config.background_normalisation_uncertainty, dict):
        named += list(config.background_normalisation_uncertainty)
    for sample in named:
        if sample not in samples:
            raise FitError(f"configured sample '{sample}' not found in templates (samples: {sorted(samples)})")
    if observations is not None:
        for channel in observations:
            if channel not in templates:
                raise FitError(f"observed channel '{channel}' not found in templates (channels: {sorted(templates)})")
        for channel in templates:
            if channel not in observations:
                raise FitError(f"no observed data for channel '{channel}'")


def _array(channel: str, sample: str, key: str, value, nbins: int | None) -> np.ndarray:
    arr = np.asarray(value, dtype=float)
    if arr.ndim != 1 or (nbins is not None and len(arr) != nbins):
        raise FitError(f"{channel}/{sample}: '{key}' must be a 1-d array of {nbins} bins, got shape {arr.shape}")
    return arr


def staterror_mask(templates: dict, channel: str, threshold: float) -> np.ndarray:
    """Bins of ``channel`` kept for staterror: combined relative MC-stat uncertainty >= ``threshold``."""
    nominal = sum(np.asarray(s["yields"], float) for s in templates[channel].values())
    sumw2 = sum(np.asarray(s.get("sumw2", np.zeros_like(s["yields"])), float) for s in templates[channel].values())
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = np.where(nominal > 0, np.sqrt(sumw2) / nominal, 0.0)
    return (relative >= threshold) & (relative > 0)


NORMSYS_FLOOR = 1e-2


def _variation_modifiers(name: str, nominal: np.ndarray, up: np.ndarray, down: np.ndarray, config: FitSettings) -> list[dict]:
    if config.symmetrize:
        down = 2 * nominal - up
    if not config.split_norm_shape:
        return [{"name": name, "type": "histosys", "data": {"hi_data": up.tolist(), "lo_data": down.tolist()}}]
    total = nominal.sum()
    if total <= 0:
        return []
    # A variation that empties a template (a few MC events moving out) would give a
    # factor 0, whose logarithm the normsys interpolation takes: floor it.
    hi, lo = max(up.sum() / total, NORMSYS_FLOOR), max(down.sum() / total, NORMSYS_FLOOR)
    modifiers = [{"name": name, "type": "normsys", "data": {"hi": float(hi), "lo": float(lo)}}]
    # the shape part is the variation normalised to the nominal yield
    hi_shape = up / hi if hi > 0 else up
    lo_shape = down / lo if lo > 0 else down
    if not (np.allclose(hi_shape, nominal) and np.allclose(lo_shape, nominal)):
        modifiers.append({"name": name, "type": "histosys", "data": {"hi_data": hi_shape.tolist(), "lo_data": lo_shape.tolist()}})
    return modifiers


def _sample(channel: str, name: str, template: dict, nbins: int, keep_stat: np.ndarray, config: FitSettings) -> dict:
    nominal = _array(channel, name, "yields", template["yields"], nbins)
    modifiers: list[dict] = []
    if name == config.signal_template:
        modifiers.append({"name": config.poi, "type": "normfactor", "data": None})
    else:
        norm = config.norm_names.get(name, f"norm_{name}")
        if name in config.free_norms:
            modifiers.append({"name": norm, "type": "normfactor", "data": None})
        else:
            unc = config.background_normalisation_uncertainty
            unc = unc.get(name, 0.5) if isinstance(unc, dict) else unc
            if unc > 0:
                modifiers.append({"name": norm, "type": "normsys", "data": {"hi": 1.0 + unc, "lo": max(1.0 - unc, 1e-6)}})
    if config.staterror:
        sumw2 = _array(channel, name, "sumw2", template.get("sumw2", np.zeros(nbins)), nbins)
        # pyhf fixes the gamma of bins whose staterror is zero in every sample: that is the pruning
        modifiers.append({"name": f"staterror_{channel}", "type": "staterror", "data": np.where(keep_stat, np.sqrt(sumw2), 0.0).tolist()})
    for var_name, variation in template.get("variations", {}).items():
        up = _array(channel, name, f"variations.{var_name}.up", variation["up"], nbins)
        if "down" not in variation and not config.symmetrize:
            raise FitError(f"{channel}/{name}: variation '{var_name}' has no 'down' (set symmetrize=True)")
        down = _array(channel, name, f"variations.{var_name}.down", variation.get("down", 2 * nominal - up), nbins)
        modifiers.extend(_variation_modifiers(var_name, nominal, up, down, config))
    return {"name": name, "data": nominal.tolist(), "modifiers": modifiers}


def asimov_observations(templates: dict, config: FitSettings, mu: float = 1.0) -> dict[str, np.ndarray]:
    """Nominal expectation per channel with the signal scaled by ``mu``."""
    return {
        # asarray: the sum of the (array) templates, typed; only an empty channel (a FitError later) would sum to 0
        channel: np.asarray(
            sum((mu if name == config.signal_template else 1.0) * np.asarray(s["yields"], float) for name, s in samples.items())
        )
        for channel, samples in templates.items()
    }


def build_workspace(
    templates: dict,
    config: FitSettings | None = None,
    observations: dict[str, np.ndarray] | None = None,
    *,
    measurement: str = "kvv",
) -> dict:
    """Build a schema-valid pyhf workspace from templates.

    Without ``observations`` the data are pseudo-data from the nominal templates
    with the signal scaled by ``config.injected_mu``: ``pseudo_data: asimov``
    (expected counts) or ``toy`` (Poisson-fluctuated with ``config.seed``).
    """
    config = config or FitSettings()
    if not templates:
        raise FitError("no channels in templates")
    _check_config(templates, config, observations)
    if observations is None:
        observations = asimov_observations(templates, config, config.injected_mu)
        if config.pseudo_data == "toy":
            rng = np.random.default_rng(config.seed)
            observations = {c: rng.poisson(v).astype(float) for c, v in observations.items()}
    channels, obs = [], []
    for channel, samples in templates.items():
        if not samples:
            raise FitError(f"channel '{channel}' has no samples")
        nbins = len(np.asarray(next(iter(samples.values()))["yields"]))
        keep_stat = staterror_mask(templates, channel, config.staterror_prune_threshold)
        channels.append({"name": channel, "samples": [_sample(channel, n, t, nbins, keep_stat, config) for n, t in samples.items()]})
        obs.append({"name": channel, "data": _array(channel, "data", "observations", observations[channel], nbins).tolist()})
    measurement_spec = {
        "name": measurement,
        "config": {"poi": config.poi, "parameters": [{"name": config.poi, "bounds": [list(config.poi_bounds)], "inits": [1.0]}]},
    }
    spec = {"channels": channels, "observations": obs, "measurements": [measurement_spec], "version": "1.0.0"}
    try:
        pyhf.schema.validate(spec, "workspace.json")
        pyhf.Workspace(spec).model()
    except pyhf.exceptions.InvalidSpecification as exc:
        raise FitError(f"built workspace is invalid at '{exc.path}': {exc.parent.message}") from None
    return spec
