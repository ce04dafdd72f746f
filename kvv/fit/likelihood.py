"""Loading pyhf workspaces and turning them into a fast, differentiable likelihood.

The NLL is kvv's own HistFactory likelihood (:mod:`.histfactory`) where the
model's modifiers allow, else pyhf's ``model.logpdf`` traced with pyhf's JAX
backend; either is compiled with ``jax.jit``, so value and analytic gradient cost
below 1 ms on the published Belle II likelihood, against ~30 ms for pyhf's un-jitted paths.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyhf

from .histfactory import ModelFunctions, model_functions


class FitError(ValueError):
    """A workspace or fit configuration kvv cannot use; the message is one line."""


#: XLA's CPU intra-op thread pool: a likelihood's arrays are small, and handing each operation to the pool
#: costs more than it saves (value and gradient of the published Belle II likelihood 0.51 -> 0.35 ms on 2 cores)
SINGLE_THREADED_XLA = "--xla_cpu_multi_thread_eigen=false"


def _jax():
    # imported lazily: importing jax costs ~1 s and is not needed to build workspaces
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_multi_thread_eigen" not in flags:  # read when JAX starts its CPU backend; a user's choice stays
        os.environ["XLA_FLAGS"] = f"{flags} {SINGLE_THREADED_XLA}".strip()
    import jax

    jax.config.update("jax_enable_x64", True)
    if not jax.config.jax_compilation_cache_dir:
        # compiling a likelihood's functions takes seconds and recurs in every fit stage: XLA's own
        # persistent cache keeps them (JAX_COMPILATION_CACHE_DIR chooses another place)
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kvv" / "jax"
        jax.config.update("jax_compilation_cache_dir", str(cache))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return jax


@contextlib.contextmanager
def jax_backend() -> Iterator[None]:
    """Switch pyhf to its JAX backend and restore the caller's backend afterwards."""
    _jax()
    previous = pyhf.get_backend()
    pyhf.set_backend("jax", precision="64b")
    try:
        yield
    finally:
        pyhf.set_backend(*previous)


def _describe_invalid(exc: pyhf.exceptions.InvalidSpecification) -> str:
    field = exc.path or "<top level>"
    return f"schema violation at '{field}': {exc.parent.message}"


def load_workspace(workspace: dict | str | Path) -> pyhf.Workspace:
    """Read and validate a workspace given as a dict or a JSON file path.

    Raises :class:`FitError` with a one-line message naming the file and the
    failing field for unreadable, malformed or schema-invalid input.
    """
    source = "workspace"
    if isinstance(workspace, (str, Path)):
        source = str(workspace)
        try:
            text = Path(workspace).read_text()
        except OSError as exc:
            raise FitError(f"{source}: cannot read workspace ({exc.strerror})") from None
        try:
            workspace = json.loads(text)
        except json.JSONDecodeError as exc:
            raise FitError(f"{source}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    if not isinstance(workspace, dict):
        raise FitError(f"{source}: a workspace must be a JSON object, got {type(workspace).__name__}")
    try:
        return pyhf.Workspace(workspace)
    except pyhf.exceptions.InvalidSpecification as exc:
        raise FitError(f"{source}: {_describe_invalid(exc)}") from None
    except (pyhf.exceptions.InvalidWorkspaceOperation, KeyError, TypeError) as exc:
        raise FitError(f"{source}: invalid workspace ({exc})") from None


def _pyhf_functions(model: pyhf.pdf.Model) -> ModelFunctions:
    """pyhf's ``logpdf`` and its parts, traced with pyhf's JAX backend."""
    jax = _jax()

    def expected_main(pars):
        return model.expected_data(pars, include_auxdata=False)

    return ModelFunctions(
        expected_main=expected_main,
        expected_and_jacobian=lambda pars: (expected_main(pars), jax.jacrev(expected_main)(pars)),
        twice_nll=lambda pars, data: -2.0 * model.logpdf(pars, data)[0],
        twice_main_nll=lambda expected, main: -2.0 * pyhf.tensorlib.sum(pyhf.probability.Poisson(expected).log_prob(main)),
        twice_constraint_nll=lambda pars, aux: -2.0 * model.constraint_logpdf(aux, pars),
    )


def hessian_steps(pars: np.ndarray) -> np.ndarray:
    """Forward-difference steps of the Hessian of ``-2 ln L``: relative for large parameters, 1e-5 below 1."""
    return 1e-5 * np.maximum(1.0, np.abs(pars))


class Likelihood:
    """A pyhf model with its observed data and a jitted ``-2 ln L`` and gradient.

    All methods take and return NumPy arrays; ``data`` always includes the
    auxiliary data, as in pyhf.
    """

    def __init__(
        self,
        workspace: pyhf.Workspace,
        measurement: str | None = None,
        modifier_settings: dict[str, dict[str, str]] | None = None,
        *,
        native: bool = True,
    ) -> None:
        jax = _jax()
        #: the interpolation codes of the model (pyhf's defaults unless given)
        self.modifier_settings = modifier_settings or {"normsys": {"interpcode": "code4"}, "histosys": {"interpcode": "code4p"}}
        with jax_backend():
            try:
                self.model = workspace.model(measurement_name=measurement, modifier_settings=self.modifier_settings)
            except (pyhf.exceptions.InvalidModel, pyhf.exceptions.InvalidMeasurement, KeyError) as exc:
                raise FitError(f"cannot build model: {exc}") from None
            self.data = np.asarray(workspace.data(self.model), dtype=float)
        config = self.model.config
        if config.poi_index is None:
            raise FitError("the measurement defines no parameter of interest")
        self.poi_index: int = config.poi_index
        self.poi_name: str = config.poi_name
        self.names: list[str] = list(config.par_names)
        self.init = np.asarray(config.suggested_init(), dtype=float)
        self.bounds = np.asarray(config.suggested_bounds(), dtype=float)
        self.fixed = np.asarray(config.suggested_fixed(), dtype=bool)
        self.workspace = workspace
        #: parameters whose modifiers have a kink at 0 (piecewise-linear histosys, piecewise-exponential
        #: normsys): there the likelihood can have several minima, and fits try displaced starts
        kinked = {"histosys": ("code0",), "normsys": ("code1",)}
        self.kinked = np.zeros(len(self.names), dtype=bool)
        for name, kind in config.modifiers:
            if self.modifier_settings.get(kind, {}).get("interpcode") in kinked.get(kind, ()):
                self.kinked[config.par_slice(name)] = True

        #: the model's -2 ln L and its parts in JAX: kvv's own (:mod:`.histfactory`) where the model has only
        #: the modifiers it implements and ``native`` is set, else pyhf's
        native_functions = model_functions(self.model, dict(workspace), self.modifier_settings) if native else None
        self.native = native_functions is not None
        self.functions = native_functions or _pyhf_functions(self.model)
        twice_nll = self.functions.twice_nll
        model = self.model

        def expected(pars):
            return model.expected_data(pars, include_auxdata=True)

        def by_sample(pars):
            return model.main_model.expected_data(pars, return_by_sample=True)

        self._jitted: dict[str, Callable] = {
            "value_and_grad": jax.jit(jax.value_and_grad(twice_nll)),
            "value": jax.jit(twice_nll),
            "expected": jax.jit(expected),
            "by_sample": jax.jit(by_sample),
        }
        self._traced: set[tuple] = set()

    def _call(self, name: str, *args: np.ndarray):
        """Call a jitted function; the first call traces pyhf's model, which needs pyhf's JAX backend.

        Switching pyhf's backend makes every model recompute its tensors, so it
        is done only for tracing; later calls with same-shaped float64 inputs
        reuse the compiled function and never touch pyhf.
        """
        fn = self._jitted[name]
        args = tuple(np.asarray(a, dtype=float) for a in args)
        key = (name, *(a.shape for a in args))  # JAX traces again for new shapes
        if key in self._traced:
            return fn(*args)
        with jax_backend():
            out = fn(*args)
        self._traced.add(key)
        return out

    def compiled(self, name: str, build: Callable[[ModelFunctions], Callable]) -> Callable[..., Any]:
        """``jax.jit(build(self.functions))``, built on first use and kept under ``name``.

        ``build`` composes the model's JAX functions into what a caller needs
        compiled (e.g. a ``jax.vmap`` over toys); the returned function takes
        NumPy arrays like the others.
        """
        if name not in self._jitted:
            self._jitted[name] = _jax().jit(build(self.functions))
        return lambda *args: self._call(name, *args)

    @classmethod
    def from_workspace(
        cls,
        workspace: dict | str | Path | pyhf.Workspace,
        measurement: str | None = None,
        modifier_settings: dict[str, dict[str, str]] | None = None,
        *,
        native: bool = True,
    ) -> Likelihood:
        """Build from a workspace dict, JSON path or :class:`pyhf.Workspace`, with pyhf's ``modifier_settings``.

        ``native=False`` keeps pyhf's ``logpdf`` even where kvv's own implements the model.
        """
        if not isinstance(workspace, pyhf.Workspace):
            workspace = load_workspace(workspace)
        return cls(workspace, measurement, modifier_settings, native=native)

    @property
    def npars(self) -> int:
        return len(self.init)

    def twice_nll(self, pars: np.ndarray, data: np.ndarray | None = None) -> float:
        """``-2 ln L(pars | data)``."""
        return float(self._call("value", pars, self._data(data)))

    def value_and_grad(self, pars: np.ndarray, data: np.ndarray | None = None) -> tuple[float, np.ndarray]:
        """``-2 ln L`` and its analytic gradient."""
        value, grad = self._call("value_and_grad", pars, self._data(data))
        return float(value), np.asarray(grad)

    def hessian(self, pars: np.ndarray, data: np.ndarray | None = None, free: np.ndarray | None = None) -> np.ndarray:
        """Hessian of ``-2 ln L`` in the free parameters, by forward differences of the exact gradient.

        Differencing the analytic gradient (one gradient call per parameter,
        symmetrised) avoids a second-order JAX trace, whose compilation costs
        ~15 s on the published Belle II likelihood.
        """
        pars = np.asarray(pars, float)
        free_idx = np.flatnonzero(~self.fixed if free is None else free)
        steps = hessian_steps(pars)
        g0 = self.value_and_grad(pars, data)[1][free_idx]
        hess = np.zeros((len(free_idx), len(free_idx)))
        for row, i in enumerate(free_idx):
            shifted = pars.copy()
            shifted[i] += steps[i]
            hess[row] = (self.value_and_grad(shifted, data)[1][free_idx] - g0) / steps[i]
        return 0.5 * (hess + hess.T)

    def expected_data(self, pars: np.ndarray) -> np.ndarray:
        """Expected main + auxiliary data: an Asimov data set for ``pars``."""
        return np.asarray(self._call("expected", pars))

    def expected_by_sample(self, pars: np.ndarray) -> np.ndarray:
        """Expected main-model yields, shape (n_samples, n_bins), samples in ``model.config.samples`` order."""
        return np.asarray(self._call("by_sample", pars))

    def toys(self, pars: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` pseudo-experiments of :meth:`toy`, one per row (n, ndata), drawn in turn from ``rng``."""
        return np.asarray([self.toy(pars, rng) for _ in range(n)]).reshape(n, self.data.size)

    def toy(self, pars: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A pseudo-experiment: Poisson main data and fluctuated auxiliary data around ``pars``."""
        config = self.model.config
        expected = self.expected_data(pars)
        main = rng.poisson(expected[: config.nmaindata]).astype(float)
        aux = []
        for name in config.auxdata_order:
            pset = config.param_set(name)
            centre = np.asarray(pars[config.par_slice(name)], float)
            if pset.pdf_type == "normal":
                aux.append(rng.normal(centre, np.asarray(pset.width(), float)))
            else:  # Poisson-constrained (shapesys): aux counts are tau * gamma
                tau = np.asarray(pset.factors, float)
                aux.append(rng.poisson(centre * tau).astype(float))
        return np.concatenate([main, *aux]) if aux else main

    def _data(self, data: np.ndarray | None) -> np.ndarray:
        return self.data if data is None else data
