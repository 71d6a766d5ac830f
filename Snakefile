# sgdnoise: the noise of SGD, measured. Table of contents of the workflow.
#
#   snakemake --cores 2                         the default studies of config.yaml
#   snakemake --cores 2 --configfile my.yaml    only the studies of my.yaml
#   snakemake --profile workflow/profiles/slurm --configfile workflow/studies/X.yaml
from snakemake.utils import min_version

min_version("9.0")


# A command-line --configfile replaces the default studies instead of joining them.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/observables.smk"
include: "workflow/rules/theory.smk"
include: "workflow/rules/fit.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/study_fits.smk"
include: "workflow/rules/plots.smk"


rule all:
    input:
        final_outputs(),
    default_target: True
