"""Paper tables and figures, made from saved evaluation outputs only (no model, torch or the_well).

- ``irno.report.results``  load evaluation outputs (`load_run`, `load_runs` -> `EvalRun`, missing
  runs explicit) and the published numbers (`load_reported` -> `Reported`, config/reported.yaml)
- ``irno.report.tables``   `write_tables`: tables/{main,ablations,bands,per_field}.{csv,md,tex}
- ``irno.report.figures``  `write_figures`: figures/{spectral_error_ratio,spectral_mse_per_step,
  convergence,energy_spectra,fields}.{pdf,png}

Both read a *report plan*, a YAML file the workflow writes from the experiment grid it scheduled
(`irno.config.ReportPlan`; docs/outputs.md, "Report plan")::

    run_name: paper
    datasets: [active_matter]                # eval/<dataset>/...
    bases: [FNO, TFNO]                       # eval/<dataset>/<base>/...
    main_experiment: irno                    # the full method
    experiments:                             # every run to show, in table order
      - {name: irno, group: full method, label: IRNO}
      - {name: no_spectral, group: loss terms, label: no spectral loss}
      - {name: K_4, group: K, label: K = 4}
      - {name: alpha_0.5, group: alpha, label: α = 0.5}
      - {name: transfer, group: transfer, label: transferred Φ}
    band_experiments: [irno, no_spectral]    # bands table, spectral-MSE figure
    sweeps: {alpha: [alpha_0.1, alpha_0.5], K: [K_4]}   # convergence figure; the main experiment joins each
    figure_dataset: active_matter            # optional: the run of the fields figure
    figure_base: FNO                         # (default: the first dataset and base)
    simulated: []                            # datasets that are re-simulations: no published numbers beside ours
    reported_names: {}                       # base -> model name in reported.yaml, if they differ

A listed run that is absent on disk appears as "missing" in its cells and panels; a diverged
one keeps its numbers, marked. The subpackage imports nothing eagerly: the table rule never
pays for matplotlib, the figure rule never for torch.
"""
