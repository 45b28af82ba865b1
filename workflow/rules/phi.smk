"""The refinement operator Phi: one settings file, one training and one evaluation per run.

A run's settings (Phi defaults deep-merged with the experiment's overrides) enter
phi_settings as a parameter, so editing one experiment reruns that experiment only (and the
tables and figures that aggregate it). A transfer experiment trains nothing: its evaluation
takes Phi from the source base's run.
"""


rule train_phi:
    input:
        unpack(run_inputs),
        settings=rules.phi_settings.output,
    output:
        # RUNDIR also holds last.pt, the resume state: a job killed by the cluster and started
        # again (retries) continues from its last complete epoch.
        checkpoint=f"{RUNDIR}/checkpoint.pt",
        train_log=f"{RUNDIR}/train_log.csv",
    log:
        f"{LOGS}/train_phi/{RUN_TAG}.log",
    benchmark:
        f"{BENCHMARKS}/train_phi/{RUN_TAG}.tsv"
    wildcard_constraints:
        experiment=one_of(STUDY.trained_experiments),
    conda:
        ENV
    threads: 1
    resources:
        **cluster_resources("train_phi"),
    params:
        run_dir=lambda wc, output: os.path.dirname(output.checkpoint),
        # One DDP process per GPU when the job has several (`gpu` resource, e.g. from the SLURM
        # profile). Derived from resources, so a different GPU count is no reason to retrain.
        nproc=lambda wc, resources: (
            f" --nproc {resources.gpu}" if resources.get("gpu", 0) > 1 else ""
        ),
    shell:
        # --memory-mb and --stage-dir: irno train reads the stores and caches in place where they
        # fit in the job's memory, else from copies in the node's staging folder (IRNO_STAGE_DIR,
        # else the job's TMPDIR, read on the node; set but empty: none), see docs/slurm.md.
        "irno train --config {input.settings} --train {input.train} --train-cache {input.train_cache}"
        " --valid {input.valid} --valid-cache {input.valid_cache}"
        ' --memory-mb {resources.mem_mb} --stage-dir "${{IRNO_STAGE_DIR-${{TMPDIR-}}}}"'
        " --out {params.run_dir}{params.nproc} > {log} 2>&1"


rule evaluate:
    input:
        unpack(test_inputs),
        settings=rules.eval_settings.output,
        checkpoint=trained_checkpoint,
    output:
        metrics=f"{EVAL}/metrics.json",
        per_step=f"{EVAL}/per_step.csv",
        spectra=f"{EVAL}/spectra.npz",
    log:
        f"{LOGS}/evaluate/{RUN_TAG}.log",
    benchmark:
        f"{BENCHMARKS}/evaluate/{RUN_TAG}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        **cluster_resources("evaluate"),
    params:
        eval_dir=lambda wc, output: os.path.dirname(output.metrics),
        trained_on_base=lambda wc: STUDY.run(
            wc.dataset, wc.base, wc.experiment
        ).trained_on_base,
    shell:
        "irno evaluate --config {input.settings} --checkpoint {input.checkpoint} --store {input.store}"
        " --cache {input.cache} --out {params.eval_dir} --dataset {wildcards.dataset} --base {wildcards.base}"
        " --experiment {wildcards.experiment} --trained-on-base {params.trained_on_base} > {log} 2>&1"
