rule score_cell:
    """The task's metrics of one cell (model, task, condition, language)."""
    input:
        predictions=condition_predictions,
        data=DATA.replace("{split}", eval_split()),
    output:
        metrics=METRICS,
    log:
        f"{LOGS}/score_cell/{{model}}.{{task}}.{{condition}}.{{lang}}.log",
    wildcard_constraints:
        condition=one_of(c for c in CONDITIONS if c not in BEST),
    conda:
        "../../envs/data.yaml"
    params:
        display_name=lambda wc: display_name(config, wc.model),
    script:
        "../scripts/score_cell.py"
