# LEAP: Layer-wise Exit-Aware Pretraining (ACL 2026), reproduction workflow.
#
# Stages (one rule file each): data extraction and filtering -> teacher embedding
# cache -> training -> evaluation -> tables, figures and the claims report.
# This file only validates the config, includes the stages and names the targets.

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/demo.yaml"


include: "rules/common.smk"
include: "rules/evaluate.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        TABLES,
