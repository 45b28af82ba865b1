"""Datasets in The Well's format (downloaded, read in place from a local copy, or simulated) and
their prepared stores.

A dataset's manifest (files, sizes, SHA-256, fields, verified readable) is what later rules depend on;
the files themselves live under STUDY.well_root(dataset). Every folder here is named by the
dataset's data id (common.smk): its name, or under shared_root its name and a hash.
"""


localrules:
    download_dataset,


rule simulate_dataset:
    input:
        settings=rules.simulate_settings.output,
    output:
        manifest=f"{DATA}/manifest.json",
    log:
        f"{LOGS}/simulate_dataset/{{data_id}}.log",
    benchmark:
        f"{BENCHMARKS}/simulate_dataset/{{data_id}}.tsv"
    wildcard_constraints:
        data_id=one_of(STUDY.data_ids_from("simulate")),
    conda:
        ENV
    threads: 2
    resources:
        **cluster_resources("simulate_dataset"),
    params:
        root=lambda wc: STUDY.well_root(dataset_of(wc)),
    shell:
        "irno simulate --config {input.settings} --root {params.root} --manifest {output.manifest}"
        " --workers {threads} > {log} 2>&1"


rule download_dataset:
    output:
        manifest=f"{DATA}/manifest.json",
    log:
        f"{LOGS}/download_dataset/{{data_id}}.log",
    benchmark:
        f"{BENCHMARKS}/download_dataset/{{data_id}}.tsv"
    wildcard_constraints:
        data_id=one_of(STUDY.data_ids_from("download")),
    conda:
        ENV
    threads: 1
    params:
        dataset=dataset_of,
        root=lambda wc: STUDY.well_root(dataset_of(wc)),
        splits=SPLITS,
    shell:
        "irno download --dataset {params.dataset} --root {params.root} --manifest {output.manifest}"
        " --splits {params.splits} > {log} 2>&1"


rule index_local_dataset:
    """An existing copy of The Well (source: local), read in place: every file the registry lists
    is checked and hashed into the manifest, which lands here; nothing is written beside the
    files and no network is used."""
    output:
        manifest=f"{DATA}/manifest.json",
    log:
        f"{LOGS}/index_local_dataset/{{data_id}}.log",
    benchmark:
        f"{BENCHMARKS}/index_local_dataset/{{data_id}}.tsv"
    wildcard_constraints:
        data_id=one_of(STUDY.data_ids_from("local")),
    conda:
        ENV
    threads: 1
    resources:
        **cluster_resources("index_local_dataset"),
    params:
        dataset=dataset_of,
        root=lambda wc: STUDY.well_root(dataset_of(wc)),
        splits=SPLITS,
        files_present=lambda wc: (
            ""
            if STUDY.datasets[dataset_of(wc)].get("complete", True)
            else " --files-present"
        ),
    shell:
        "irno index --dataset {params.dataset} --root {params.root} --manifest {output.manifest}"
        " --splits {params.splits}{params.files_present} > {log} 2>&1"


rule prepare_split:
    input:
        manifest=f"{DATA}/manifest.json",
    output:
        store=directory(STORE),
    log:
        f"{LOGS}/prepare_split/{{data_id}}_{{split}}.log",
    benchmark:
        f"{BENCHMARKS}/prepare_split/{{data_id}}_{{split}}.tsv"
    # bad data refused by irno prepare is refused again: the message is shown once
    retries: 0
    conda:
        ENV
    threads: 1
    resources:
        **cluster_resources("prepare_split"),
    shell:
        "irno prepare --manifest {input.manifest} --split {wildcards.split} --out {output.store} > {log} 2>&1"
