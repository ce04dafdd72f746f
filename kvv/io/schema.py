"""coffea NanoEvents schema for the Belle II event format of :mod:`kvv.eventformat`.

Flat basf2 branches ``track_px[nTracks]`` ... become the collections
``events.Tracks`` and ``events.Photons`` with vector behaviour: tracks are
three-vectors (``.pt``, ``.p``, ``.theta`` ...), photons carry ``.px`` ... of a
massless particle with the cluster energy. Event-level branches stay top-level.
"""

from __future__ import annotations

import awkward as ak
import numpy as np
from coffea.nanoevents.methods import base, vector
from coffea.nanoevents.schemas.base import BaseSchema, zip_forms

from kvv import eventformat

behavior: dict = {}
behavior.update(base.behavior)
behavior.update(vector.behavior)


@ak.mixin_class(behavior)
class Track(vector.ThreeVector, base.NanoCollection):
    """A reconstructed charged track (lab frame, momentum at the POCA)."""

    def energy(self, mass: float) -> ak.Array:
        """Energy in GeV under a mass hypothesis in GeV/c^2."""
        return (self.p2 + mass**2) ** 0.5


@ak.mixin_class(behavior)
class Photon(base.NanoCollection):
    """An ECL cluster without a matched track, taken as a massless photon.

    Not a vector mixin: vector reads a field ``E`` as a time coordinate and
    (E, theta, phi) is no coordinate system it knows, so the momentum
    components are spelled out here.
    """

    @property
    def px(self) -> ak.Array:
        return self.E * np.sin(self.theta) * np.cos(self.phi)

    @property
    def py(self) -> ak.Array:
        return self.E * np.sin(self.theta) * np.sin(self.phi)

    @property
    def pz(self) -> ak.Array:
        return self.E * np.cos(self.theta)

    @property
    def pt(self) -> ak.Array:
        return self.E * np.sin(self.theta)


# ak.mixin_class also binds this class to the module name TrackArray, behind the linters' backs;
# it is named here from the registry instead.
TrackArray = behavior["*", "Track"]
# vector's projections (e.g. ``.pt``) look these classes up on the array type.
TrackArray.ProjectionClass2D = vector.TwoVectorArray
TrackArray.ProjectionClass3D = vector.ThreeVectorArray
TrackArray.ProjectionClass4D = vector.LorentzVectorArray
TrackArray.MomentumClass = vector.SphericalThreeVectorArray


_RECORD_NAMES = {eventformat.TRACKS.name: "Track", eventformat.PHOTONS.name: "Photon"}


class Belle2Schema(BaseSchema):
    """Zips the basf2 collections of :mod:`kvv.eventformat` into records."""

    __dask_capable__ = True

    def __init__(self, base_form, *args, **kwargs):
        super().__init__(base_form, *args, **kwargs)
        branches = dict(zip(self._form["fields"], self._form["contents"], strict=True))
        for coll in eventformat.COLLECTIONS:
            present = {f.name: branches.pop(coll.branch(f.name)) for f in coll.fields if coll.branch(f.name) in branches}
            if not present:
                continue
            branches[coll.name] = zip_forms(present, coll.name, _RECORD_NAMES[coll.name])
        self._form["fields"] = list(branches)
        self._form["contents"] = list(branches.values())

    @classmethod
    def behavior(cls) -> dict:
        return behavior
