"""The spectral bands the evaluation scores and the report shows, in order: the 3 default bins of
The Well's ``binned_spectral_mse``, from low to high wavenumber (docs/outputs.md).

A module of its own so that the report, which reads saved outputs only, knows them without
importing torch (the evaluation's imports).
"""

BANDS = ("low", "mid", "high")
