"""Datasets in The Well's format (downloaded or simulated) and their prepared stores.

A dataset's manifest (files, sizes, SHA-256, fields, verified readable) is what later rules depend on;
the files themselves live under STUDY.well_root(dataset).
"""


localrules:
    simulate_settings,
    download_dataset,


rule simulate_settings:
    output:
        f"{DATA}/settings.yaml",
    log:
        f"{LOGS}/simulate_settings/{{dataset}}.log",
    benchmark:
        f"{BENCHMARKS}/simulate_settings/{{dataset}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        runtime=scaled(5),
        mem_mb=scaled(1000),
    params:
        settings_json=lambda wc: settings_json(STUDY.simulate_settings(wc.dataset)),
    shell:
        "irno write-settings --kind simulate --json {params.settings_json:q} --out {output} 2> {log}"


rule simulate_dataset:
    input:
        settings=rules.simulate_settings.output,
    output:
        manifest=f"{DATA}/manifest.json",
    log:
        f"{LOGS}/simulate_dataset/{{dataset}}.log",
    benchmark:
        f"{BENCHMARKS}/simulate_dataset/{{dataset}}.tsv"
    wildcard_constraints:
        dataset=one_of(STUDY.datasets_from("simulate")),
    conda:
        ENV
    threads: 2
    resources:
        runtime=scaled(240),
        mem_mb=scaled(16000),
    params:
        root=lambda wc: STUDY.well_root(wc.dataset),
    shell:
        "irno simulate --config {input.settings} --root {params.root} --manifest {output.manifest}"
        " --workers {threads} > {log} 2>&1"


rule download_dataset:
    output:
        manifest=f"{DATA}/manifest.json",
    log:
        f"{LOGS}/download_dataset/{{dataset}}.log",
    benchmark:
        f"{BENCHMARKS}/download_dataset/{{dataset}}.tsv"
    wildcard_constraints:
        dataset=one_of(STUDY.datasets_from("download")),
    conda:
        ENV
    threads: 1
    resources:
        runtime=scaled(720),
        mem_mb=scaled(2000),
    params:
        root=lambda wc: STUDY.well_root(wc.dataset),
        splits=SPLITS,
    shell:
        "irno download --dataset {wildcards.dataset} --root {params.root} --manifest {output.manifest}"
        " --splits {params.splits} > {log} 2>&1"


rule prepare_split:
    input:
        manifest=f"{DATA}/manifest.json",
    output:
        store=directory(STORE),
    log:
        f"{LOGS}/prepare_split/{{dataset}}_{{split}}.log",
    benchmark:
        f"{BENCHMARKS}/prepare_split/{{dataset}}_{{split}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        runtime=scaled(240),
        mem_mb=scaled(32000),
    shell:
        "irno prepare --manifest {input.manifest} --split {wildcards.split} --out {output.store} > {log} 2>&1"
