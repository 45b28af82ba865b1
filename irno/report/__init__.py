"""Paper tables and figures, made from saved evaluation outputs only (no model, torch or the_well).

- ``irno.report.results``  evaluation outputs (`load_runs` -> `EvalRun`) and published numbers
- ``irno.report.tables``   `write_tables`: tables/{main,ablations,bands,per_field,claims}.{csv,md,tex}
- ``irno.report.figures``  `write_figures`: figures/{spectral_error_ratio,spectral_mse_per_step,
  convergence,energy_spectra,fields}.{pdf,png}
- ``irno.report.names``    those table and figure names, importing nothing (the workflow declares them)

Both read a *report plan*, a YAML file the workflow writes from the experiment grid it scheduled
(`irno.config.ReportPlan`). A listed run absent on disk is shown as "missing"; a diverged one keeps
its numbers, marked. Nothing is imported eagerly: the table rule never pays for matplotlib, the
figure rule never for torch. Detail: docs/outputs.md#report-plan-irno-tables--irno-figures---plan-planyaml
"""
