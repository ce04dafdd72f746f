"""Physics kernels: pure functions of numpy arrays (flat content plus offsets), no I/O.

* :mod:`~kvv.physics.kinematics`: the one Lorentz boost, lab -> CMS, the signal-kaon candidate, Mbc, q²;
* :mod:`~kvv.physics.eventshape`: thrust, Fox-Wolfram and CLEO-cone moments, ROE sums;
* :mod:`~kvv.physics.beams`: SuperKEKB beam four-momenta and the CMS frame;
* :mod:`~kvv.physics.formfactors`: the Ball-Zwicky B -> K form factor and the SM dΓ/dq² of B -> K νν̄.

PDG numbers come from ``particle``; units are GeV and cm, as in basf2.
"""
