from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "report/workflow.rst"


include: "workflow/rules/common.smk"


# cheap CPU steps run where snakemake runs, not as cluster jobs
localrules:
    all,
    prepare_split,
    draw_demonstrations,
    select_training_rows,
    build_prompts,
    score_cell,
    select_lambda,
    best_cell,
    collect_cells,
    render_results,
    run_record,
    download,
    download_model,
    download_data,


include: "workflow/rules/download.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/prompts.smk"
include: "workflow/rules/inference.smk"
include: "workflow/rules/teacher.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/metrics.smk"
include: "workflow/rules/selection.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/report.smk"


onerror:
    partial_report()


rule all:
    default_target: True
    input:
        get_final_output() + [RUN_RECORD],
