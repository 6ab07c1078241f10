"""Built-in synthetic chest-CT cohort: seeded phantom patients with labelled lung nodules.

Patients share anatomy at consistent voxel positions (the property Semantic Genesis' self-discovery
relies on) and come from a few latent body-type clusters (`habitus.HABITUS`), so "similar patients"
exist. `sample_params` draws a patient, `render` turns parameters into voxels, `generate_patient` does
both and wraps the result in a `Volume`.
"""

from semgen_ray.phantoms.anatomy import PatientParams, sample_params
from semgen_ray.phantoms.generate import generate_patient
from semgen_ray.phantoms.render import render

__all__ = ["PatientParams", "generate_patient", "render", "sample_params"]
