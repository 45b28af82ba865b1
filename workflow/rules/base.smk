"""Frozen base operators: fetched from the Hub (fetch_base) or trained here (train_base), which
of the two per base by its config `source`; then checked against the published error
(check_base) and run once over every split (cache_base_predictions), so that Phi's training
reads h0 = T_base(x) instead of recomputing it. Every folder here is named by the dataset's
data id and the base's id (common.smk): their names, or under shared_root names and hashes.
"""


localrules:
    fetch_base,


rule fetch_base:
    input:
        settings=rules.base_settings.output,
    output:
        model=directory(f"{BASE}/model"),
    log:
        f"{LOGS}/fetch_base/{{data_id}}_{{base_id}}.log",
    benchmark:
        f"{BENCHMARKS}/fetch_base/{{data_id}}_{{base_id}}.tsv"
    wildcard_constraints:
        base_id=one_of(STUDY.base_ids_from("pretrained")),
    conda:
        ENV
    threads: 1
    shell:
        "irno base fetch --config {input.settings} --out {output.model} > {log} 2>&1"


rule train_base:
    input:
        settings=rules.base_settings.output,
        train=store_dir("train"),
        valid=store_dir("valid"),
    output:
        model=directory(f"{BASE}/model"),
    log:
        f"{LOGS}/train_base/{{data_id}}_{{base_id}}.log",
    benchmark:
        f"{BENCHMARKS}/train_base/{{data_id}}_{{base_id}}.tsv"
    wildcard_constraints:
        base_id=one_of(STUDY.base_ids_from("train")),
    conda:
        ENV
    # every later job waits for the base: it takes the cores it is given (at most --cores)
    threads: 2
    resources:
        **cluster_resources("train_base"),
    shell:
        "irno base train --config {input.settings} --train {input.train} --valid {input.valid}"
        " --out {output.model} > {log} 2>&1"


rule check_base:
    input:
        settings=rules.base_settings.output,
        model=f"{BASE}/model",
        valid=store_dir("valid"),
        test=store_dir("test"),
    output:
        check=f"{BASE}/base_check.json",
    log:
        f"{LOGS}/check_base/{{data_id}}_{{base_id}}.log",
    benchmark:
        f"{BENCHMARKS}/check_base/{{data_id}}_{{base_id}}.tsv"
    # a base that misses the published numbers misses them again: the verdict is shown once
    retries: 0
    conda:
        ENV
    threads: 1
    resources:
        **cluster_resources("check_base"),
    shell:
        "irno base check --config {input.settings} --model {input.model} --valid {input.valid}"
        " --test {input.test} --out {output.check} > {log} 2>&1"


rule cache_base_predictions:
    input:
        settings=rules.base_settings.output,
        model=f"{BASE}/model",
        # no cache is built on a base that failed its check; the cache runs the forward it decided
        check=rules.check_base.output.check,
        store=STORE,
    output:
        cache=directory(CACHE),
    log:
        f"{LOGS}/cache_base_predictions/{{data_id}}_{{base_id}}_{{split}}.log",
    benchmark:
        f"{BENCHMARKS}/cache_base_predictions/{{data_id}}_{{base_id}}_{{split}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        **cluster_resources("cache_base_predictions"),
    shell:
        "irno base cache --config {input.settings} --model {input.model} --store {input.store}"
        " --check {input.check} --out {output.cache} > {log} 2>&1"
