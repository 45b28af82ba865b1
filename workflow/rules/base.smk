"""Frozen base operators: fetched from the Hub (fetch_base) or trained here (train_base), which
of the two per base by its config `source`; then checked against the published error
(check_base) and run once over every split (cache_base_predictions), so that Phi's training
reads h0 = T_base(x) instead of recomputing it.
"""


localrules:
    base_settings,
    fetch_base,


rule base_settings:
    output:
        f"{BASE}/settings.yaml",
    log:
        f"{LOGS}/base_settings/{{dataset}}_{{base}}.log",
    benchmark:
        f"{BENCHMARKS}/base_settings/{{dataset}}_{{base}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        runtime=scaled(5),
        mem_mb=scaled(1000),
    params:
        settings_json=lambda wc: settings_json(STUDY.base_settings(wc.dataset, wc.base)),
    shell:
        "irno write-settings --kind base --json {params.settings_json:q} --out {output} 2> {log}"


rule fetch_base:
    input:
        settings=rules.base_settings.output,
    output:
        model=directory(f"{BASE}/model"),
    log:
        f"{LOGS}/fetch_base/{{dataset}}_{{base}}.log",
    benchmark:
        f"{BENCHMARKS}/fetch_base/{{dataset}}_{{base}}.tsv"
    wildcard_constraints:
        base=one_of(STUDY.bases_from("pretrained")),
    conda:
        ENV
    threads: 1
    resources:
        runtime=scaled(60),
        mem_mb=scaled(4000),
    shell:
        "irno base fetch --config {input.settings} --out {output.model} > {log} 2>&1"


rule train_base:
    input:
        settings=rules.base_settings.output,
        train=STORE.replace("{split}", "train"),
        valid=STORE.replace("{split}", "valid"),
    output:
        model=directory(f"{BASE}/model"),
    log:
        f"{LOGS}/train_base/{{dataset}}_{{base}}.log",
    benchmark:
        f"{BENCHMARKS}/train_base/{{dataset}}_{{base}}.tsv"
    wildcard_constraints:
        base=one_of(STUDY.bases_from("train")),
    conda:
        ENV
    # every later job waits for the base: it takes the cores it is given (at most --cores)
    threads: 2
    resources:
        runtime=scaled(720),
        mem_mb=scaled(64000),
        gpu=1,
    shell:
        "irno base train --config {input.settings} --train {input.train} --valid {input.valid}"
        " --out {output.model} > {log} 2>&1"


rule check_base:
    input:
        settings=rules.base_settings.output,
        model=f"{BASE}/model",
        valid=STORE.replace("{split}", "valid"),
        test=STORE.replace("{split}", "test"),
    output:
        check=f"{BASE}/base_check.json",
    log:
        f"{LOGS}/check_base/{{dataset}}_{{base}}.log",
    benchmark:
        f"{BENCHMARKS}/check_base/{{dataset}}_{{base}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        runtime=scaled(60),
        mem_mb=scaled(32000),
        gpu=1,
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
        f"{LOGS}/cache_base_predictions/{{dataset}}_{{base}}_{{split}}.log",
    benchmark:
        f"{BENCHMARKS}/cache_base_predictions/{{dataset}}_{{base}}_{{split}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        runtime=scaled(120),
        mem_mb=scaled(64000),
        gpu=1,
    shell:
        "irno base cache --config {input.settings} --model {input.model} --store {input.store}"
        " --check {input.check} --out {output.cache} > {log} 2>&1"
