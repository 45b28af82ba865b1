"""Tables, figures and the HTML report, from saved evaluation outputs only.

The plan (which runs exist, their groups and sweeps) is written from the config like every
other settings file, so the tables and figures rerun when the set of runs changes and never
need a retraining: `snakemake figures --forcerun figures` redraws them from results/<run>/eval.
"""


localrules:
    tables,
    figures,
    report,


rule tables:
    input:
        plan=rules.report_plan_settings.output,
        evaluations=evaluations(STUDY.runs),
        reported=config["report"]["reported"],
        claims=config["report"]["claims"],
    output:
        [
            report(
                f"{RESULTS}/tables/{name}.csv",
                caption=f"../report/{name}.rst",
                category="Tables",
            )
            for name in TABLE_NAMES
        ],
        expand(
            f"{RESULTS}/tables/{{name}}.{{ext}}", name=TABLE_NAMES, ext=("md", "tex")
        ),
    log:
        f"{LOGS}/tables.log",
    benchmark:
        f"{BENCHMARKS}/tables.tsv"
    conda:
        ENV
    threads: 1
    params:
        eval_root=lambda wc: EVAL_ROOT,
        out_dir=lambda wc, output: os.path.dirname(output[0]),
    shell:
        "irno tables --plan {input.plan} --eval-root {params.eval_root} --reported {input.reported}"
        " --claims {input.claims} --out {params.out_dir} > {log} 2>&1"


rule figures:
    input:
        plan=rules.report_plan_settings.output,
        evaluations=evaluations(STUDY.runs),
    output:
        [
            report(
                f"{RESULTS}/figures/{name}.png",
                caption=f"../report/{name}.rst",
                category="Figures",
            )
            for name in FIGURE_NAMES
        ],
        expand(f"{RESULTS}/figures/{{name}}.pdf", name=FIGURE_NAMES),
    log:
        f"{LOGS}/figures.log",
    benchmark:
        f"{BENCHMARKS}/figures.tsv"
    conda:
        ENV
    threads: 1
    params:
        eval_root=lambda wc: EVAL_ROOT,
        out_dir=lambda wc, output: os.path.dirname(output[0]),
    shell:
        "irno figures --plan {input.plan} --eval-root {params.eval_root} --out {params.out_dir} > {log} 2>&1"


rule report:
    """The HTML report of everything above and of the ROMA study, if any: the file
    `snakemake all --report results/<run>/report.html` makes.

    It has to nest a Snakemake: Snakemake writes its report only in a mode of its own (--report),
    from the DAG and the records of finished jobs in .snakemake/, and no job can ask the running
    Snakemake for it. So this localrule (the records are on this machine) starts that mode on the
    same Snakefile with this run's config (kept beside the log), without taking the lock the
    running Snakemake holds (--nolock; the report only reads).
    """
    input:
        irno_outputs(),
        rules.roma_report.output,
    output:
        f"{RESULTS}/report.html",
    log:
        config=f"{LOGS}/report/config.json",
        messages=f"{LOGS}/report/report.log",
    benchmark:
        f"{BENCHMARKS}/report.tsv"
    conda:
        ENV
    threads: 1
    params:
        snakefile=os.path.relpath(workflow.main_snakefile),
        config_json=lambda wc: json.dumps(config, sort_keys=True),
    shell:
        "printf '%s\\n' {params.config_json:q} > {log.config}"
        " && snakemake --nolock --snakefile {params.snakefile} --configfile {log.config}"
        " --report {output} {input} > {log.messages} 2>&1"
