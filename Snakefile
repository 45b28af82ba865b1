"""IRNO reproduction workflow: data -> base operators -> refinement (Phi) -> evaluation -> report.

    snakemake --cores 2                                                      the demo
    snakemake all --profile profiles/slurm --configfile config/config.yaml   the paper

Every output lands under results/<run_name>/ (docs/outputs.md); README.md has the rest.
"""

# Without --configfile this is the demo. (A `configfile:` directive would be merged with the
# command line's config files, mixing the demo's experiments into the paper's.)
if not workflow.overwrite_configfiles:

    configfile: "config/demo.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/base.smk"
include: "workflow/rules/refiner.smk"
include: "workflow/rules/report.smk"


# The ROMA study (its own issue) joins here: include workflow/rules/roma.smk, add its `roma:`
# section to workflow/schemas/config.schema.yaml and its report to the inputs of rule all.


rule all:
    """Everything: base checks, every run's evaluation, tables, figures and the HTML report."""
    input:
        base_checks(),
        evaluations(STUDY.runs),
        rules.tables.output,
        rules.figures.output,
        rules.report.output,


rule ablation:
    """One experiment on every selected dataset and base, nothing else:
    snakemake ablation --config ablation=K_4 (plus the run's --configfile)."""
    input:
        ablation_evaluations,
