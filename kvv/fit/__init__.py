"""kvv.fit: building pyhf workspaces from templates and inference on any pyhf workspace.

Typical use::

    from kvv.fit import Likelihood, mle, significance, upper_limit
    lh = Likelihood.from_workspace("workspace.json")
    fit = mle(lh)                      # MLE, Hessian + MINOS errors on the POI
    significance(lh).Z_obs
    upper_limit(lh, cl=0.90).observed

or everything at once with :func:`run_inference`.

The model is pyhf's; its -2 ln L is kvv's own (:mod:`.histfactory`) for the modifier
types kvv's and Belle II's workspaces use, pyhf's JAX ``logpdf`` otherwise. The optimiser
chain (:mod:`.optimize`, with Newton steps from a nearby minimum's Hessian first where one
is known) and the CLs and toy code (:mod:`.infer`) are kvv's own, because a fit that
fails with one optimiser is retried with others and a limit reuses its cached fits; the
toys of toy CLs and of the injection study are fitted side by side (:mod:`.batch`).
``tests/test_pyhf_parity.py`` checks them against ``pyhf.infer`` on the published
Belle II likelihood.
"""

from .analysis import analysis_workspace, fit_analysis, impact_groups, systematic_sources
from .infer import (
    FitResult,
    HypotestResult,
    Significance,
    ToyCLs,
    UpperLimit,
    covariance,
    goodness_of_fit,
    hypotest,
    minos_interval,
    mle,
    pulls,
    scan,
    significance,
    to_branching_fraction,
    toy_cls,
    toy_upper_limit,
    upper_limit,
)
from .injection import injection_study
from .likelihood import FitError, Likelihood, load_workspace
from .optimize import DEFAULT_CHAIN, OptResult, minimize
from .pipeline import run_inference
from .ranking import default_groups, grouped_impacts, impacts, systematics_table
from .report import write_report
from .workspace import asimov_observations, build_workspace, staterror_mask

__all__ = [
    "DEFAULT_CHAIN",
    "FitError",
    "FitResult",
    "HypotestResult",
    "Likelihood",
    "OptResult",
    "Significance",
    "ToyCLs",
    "UpperLimit",
    "analysis_workspace",
    "asimov_observations",
    "build_workspace",
    "covariance",
    "default_groups",
    "fit_analysis",
    "goodness_of_fit",
    "grouped_impacts",
    "hypotest",
    "impact_groups",
    "impacts",
    "injection_study",
    "load_workspace",
    "minimize",
    "minos_interval",
    "mle",
    "pulls",
    "run_inference",
    "scan",
    "significance",
    "staterror_mask",
    "systematic_sources",
    "systematics_table",
    "to_branching_fraction",
    "toy_cls",
    "toy_upper_limit",
    "upper_limit",
    "write_report",
]
