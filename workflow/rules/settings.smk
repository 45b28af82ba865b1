"""Every step's settings file, for both studies, written by one rule shape: the step's resolved
settings enter as a parameter (Snakemake's params rerun trigger), so that editing them reruns
exactly the jobs that read them, and `irno write-settings --kind <kind>` validates them against
the kind's dataclass and writes them complete with defaults. One local rule per kind,
`<kind>_settings`, generated from SETTINGS_FILES (common.smk).
"""

for kind, settings_file in SETTINGS_FILES.items():

    rule:
        name:
            f"{kind}_settings"
        output:
            settings_file.path,
        log:
            settings_file.log(LOGS, kind, "log"),
        benchmark:
            settings_file.log(BENCHMARKS, kind, "tsv")
        wildcard_constraints:
            **settings_file.constraints,
        localrule: True
        conda:
            ENV
        threads: 1
        params:
            kind=kind,
            # always inside a lambda: a plain string would have its "{...}" taken for wildcards
            settings_json=lambda wc, of=settings_file.settings_of: json.dumps(
                of(wc), sort_keys=True
            ),
        shell:
            "irno write-settings --kind {params.kind} --json {params.settings_json:q} --out {output} 2> {log}"
