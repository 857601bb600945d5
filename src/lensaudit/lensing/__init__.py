"""Lens physics as pure functions over arrays (angles in arcsec): mass profiles and ray tracing.

The mock survey and the injection engine both call these functions where the physics is the
same; what differs between the mock's truth and an injection family is the model family and
its parameter draws, never the correctness of the code. Every deflection is checked against
lenstronomy in the tests. The SIE, the external shear and the Sersic and Gaussian profiles are
written once on the array API (:mod:`lensaudit.lensing.arrays`): the same function takes NumPy
arrays (the mock, one lens at a time) or PyTorch tensors batched over lenses (the injection engine).
"""

from lensaudit.lensing.mass import ray_trace, shear_deflection, sie_deflection

__all__ = ["ray_trace", "shear_deflection", "sie_deflection"]
