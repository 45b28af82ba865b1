"""The ROMA study: neural operators for Kuramoto oscillators on random hyperbolic graphs.

Reproduces Gabriel, Johnson, Karniadakis, "Connecting the geometry and dynamics of many-body
complex systems with message passing neural operators" (arXiv 2502.15913; JAX code
``nngabe/roma``) in PyTorch. Shares only ``irno.utils`` with the IRNO pipeline.

Modules, in dependency order:

- ``config``    dataclasses (data, model, training, study) and the study plan (grid -> runs)
- ``graphs``    random hyperbolic graphs (radial-band sweep), random-walk subgraphs, positional encodings
- ``kuramoto``  the dynamics on sparse operators, adaptive float64 integration, HDF5 datasets
- ``models``    ROMA (message passing, renormalisation, multiscale Transformer, DeepONet) and baselines
- ``train``     split, batches, sMSPE, the resumable training loop
- ``evaluate``  test metrics and attention maps of a trained run
- ``report``    tables, power-law fits and figures from saved outputs only
- ``cli``       the ``irno roma <verb>`` commands
"""
