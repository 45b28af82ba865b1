"""IRNO reproduction workflow: data -> base operators -> refinement (Phi) -> evaluation -> report,
and the ROMA study (workflow/rules/roma.smk) for a config with a `roma:` section.

    snakemake --cores 2                                    the demo (config/demo.yaml: both studies)
    snakemake --profile slurm all                          the IRNO paper run (the profile's config/config.yaml)
    snakemake --profile slurm all --configfile config/roma.yaml    the ROMA paper study

Every output lands under <results_root>/<run_name>/ (docs/outputs.md); README.md has the rest.
"""

# Without --configfile (and without a profile that names one: profiles/slurm names the paper's)
# this is the demo. (A `configfile:` directive would be merged with the command line's config
# files, mixing the demo's experiments into the paper's.)
if not workflow.overwrite_configfiles:

    configfile: "config/demo.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/settings.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/base.smk"
include: "workflow/rules/phi.smk"
include: "workflow/rules/roma.smk"
include: "workflow/rules/report.smk"


rule all:
    """Every study of the config (IRNO: base checks, every run's evaluation, tables, figures;
    ROMA: its tables and figures) and the HTML report."""
    input:
        irno_outputs(),
        rules.roma_report.output,
        rules.report.output,


rule irno:
    """The IRNO study alone: base checks, every run's evaluation, tables and figures."""
    input:
        irno_target,


rule roma:
    """The ROMA study alone, its tables and figures (needs the config's roma: section)."""
    input:
        roma_outputs,


rule ablation:
    """One experiment on every selected dataset and base, nothing else:
    snakemake ablation --config ablation=K_4 (plus the run's --configfile)."""
    input:
        ablation_evaluations,
