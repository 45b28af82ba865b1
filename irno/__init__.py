"""IRNO reproduction pipeline: the method, its data, base operators, evaluation and reports.

How a run flows from a config to its outputs, and the trace of K and alpha from the config to
`irno.models.refine_steps`: docs/architecture.md. The method and its metrics: docs/method.md.

Subpackages and modules, in dependency order (each uses only those above it):

- ``irno.utils``      atomic writes, YAML/JSON, config dicts <-> dataclasses, settings files,
                      seeding and RNG state, devices, hashing (shared with ROMA)
- ``irno.config``     dataclasses for every configurable step, built from plain dicts
- ``irno.study``      what a workflow config means: its runs and every step's resolved settings
                      (read by the Snakefile at start-up; no torch)
- ``irno.resume``     the resume state of a training (last.pt), for every trainer (shared with ROMA)
- ``irno.data``       The Well: file format, download, loading, prepared stores (knows no model)
- ``irno.sim``        the embedded active-matter simulator that writes The Well's format
- ``irno.base``       frozen base operators (Hub / local), their check, the prediction cache
- ``irno.models``     the refinement operator Phi and the iteration h_{k+1} = h_k + alpha Phi
- ``irno.losses``     spatial, spectral and fixed-point terms
- ``irno.train``      the trainer (resume, non-finite policy, divergence, DDP)
- ``irno.evaluate``   per-step metrics and spectra
- ``irno.report``     tables and figures from saved evaluation outputs only
- ``irno.roma``       the ROMA study (shares ``irno.utils`` only)
- ``irno.configdoc``  config/README.md, every config key, from the schema and the dataclasses
- ``irno.cli``        the ``irno`` command the workflow rules call
"""

__version__ = "0.1.0"
