"""The ROMA study (irno.roma, docs/roma.md): Kuramoto oscillators and Burgers-like social dynamics
on random hyperbolic graphs, ROMA and its baselines, the paper's experiments. Optional: without a
`roma:` section in the config these rules match nothing and `all` leaves the study out.

The section expands into datasets and runs (irno.roma.study.expand_study), each with its own
settings job whose parameter is the resolved settings. Editing a dataset therefore reruns its
simulation and every run on it; editing an experiment reruns the runs it changes only: a run's
key is a hash of its settings, so new values make new runs while unchanged runs keep their key
and outputs (runs with equal settings are shared between experiments). study.yaml, which the
report reads, follows every edit of the section, so the tables and figures always rerun.

    results/<run>/roma/study.yaml
                       data/<dataset>/{settings.yaml, dataset.h5}
                       data/<dataset>/encodings/{settings.yaml, encodings.h5} (datasets ROMA reads them of)
                       runs/<run key>/{settings.yaml, checkpoint.pt, train_log.csv, last.pt}
                       eval/<run key>/{metrics.json, attention.npz (roma runs)}   (both by roma_train)
                       tables/   figures/
"""


localrules:
    roma_report,


rule roma_simulate:
    input:
        settings=rules.roma_data_settings.output,
    output:
        # an interrupted Kuramoto simulation resumes from .dataset.h5.partial beside it
        data=f"{ROMA_DATA}/dataset.h5",
    log:
        f"{LOGS}/roma_simulate/{{roma_dataset}}.log",
    benchmark:
        f"{BENCHMARKS}/roma_simulate/{{roma_dataset}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        **cluster_resources("roma_simulate"),
    shell:
        "irno roma simulate --config {input.settings} --out {output.data} > {log} 2>&1"


rule roma_encode:
    """Laplacian eigenvectors and node2vec of every node of a dataset's graph (node2vec: GPU)."""
    input:
        settings=rules.roma_encodings_settings.output,
        data=rules.roma_simulate.output.data,
    output:
        encodings=f"{ROMA_DATA}/encodings/encodings.h5",
    log:
        f"{LOGS}/roma_encode/{{roma_dataset}}.log",
    benchmark:
        f"{BENCHMARKS}/roma_encode/{{roma_dataset}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        **cluster_resources("roma_encode"),
    shell:
        "irno roma encode --config {input.settings} --data {input.data} --out {output.encodings} > {log} 2>&1"


rule roma_train:
    """Train one run, then score it on the test subgraphs in the same job: one start-up and,
    on a cluster, one GPU allocation per run (`irno roma evaluate` re-scores by hand).
    """
    input:
        unpack(roma_encodings),
        settings=rules.roma_run_settings.output,
        data=roma_dataset,
    output:
        # last.pt beside them is the resume state: a killed job started again continues from
        # its last complete step, or, trained, only scores the model again
        checkpoint=f"{ROMA_RUNDIR}/checkpoint.pt",
        train_log=f"{ROMA_RUNDIR}/train_log.csv",
        # metrics.json, and for ROMA runs attention.npz: a folder, as the files differ by model
        evaluation=directory(ROMA_EVAL),
    log:
        f"{LOGS}/roma_train/{{roma_run}}.log",
    benchmark:
        f"{BENCHMARKS}/roma_train/{{roma_run}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        **cluster_resources("roma_train"),
    params:
        run_dir=lambda wc, output: os.path.dirname(output.checkpoint),
        encodings=lambda wc, input: (
            f"--encodings {input.encodings}" if "encodings" in input.keys() else ""
        ),
    shell:
        "irno roma train --config {input.settings} --data {input.data} {params.encodings}"
        " --out-dir {params.run_dir} --evaluation {output.evaluation} > {log} 2>&1"


rule roma_report:
    """The study's tables and figures, from saved outputs only: after a change of the report code,
    snakemake roma --forcerun roma_report redraws them without retraining."""
    input:
        study=rules.roma_study_settings.output,
        evaluations=roma_evaluations(),
        train_logs=expand(f"{ROMA_RUNDIR}/train_log.csv", roma_run=ROMA_RUNS),
    output:
        tables=roma_report_outputs("tables"),
        figures=roma_report_outputs("figures"),
    log:
        f"{LOGS}/roma_report.log",
    benchmark:
        f"{BENCHMARKS}/roma_report.tsv"
    conda:
        ENV
    threads: 1
    params:
        metrics=lambda wc, input: [f"{e}/metrics.json" for e in input.evaluations],
        attention=roma_attention_maps(),
        tables=lambda wc, output: os.path.dirname(output.tables[0]),
        figures=lambda wc, output: os.path.dirname(output.figures[0]),
    shell:
        "irno roma tables --config {input.study} --metrics {params.metrics} --out-dir {params.tables}"
        " > {log} 2>&1"
        " && irno roma figures --config {input.study} --metrics {params.metrics}"
        " --train-logs {input.train_logs} --attention {params.attention} --out-dir {params.figures}"
        " >> {log} 2>&1"
