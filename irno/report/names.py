"""The names of the files ``irno tables`` and ``irno figures`` write: ``<table>.{csv,md,tex}`` and
``<figure>.{pdf,png}``.

A module of its own, importing nothing, so that the workflow declares the report rules' outputs
from these names without paying for pandas and matplotlib at every start.
"""

TABLE_NAMES = ("main", "ablations", "bands", "per_field", "claims")
FIGURE_NAMES = ("spectral_error_ratio", "spectral_mse_per_step", "convergence", "energy_spectra", "fields")
