rule score_cell:
    """The task's metrics of one cell (model, task, condition, language) on one split."""
    input:
        predictions=condition_predictions,
        data=DATA,
    output:
        metrics=METRICS,
    log:
        f"{LOGS}/score_cell/{{model}}.{{task}}.{{condition}}.{{lang}}.{{split}}.log",
    benchmark:
        f"{BENCH}/score_cell/{{model}}.{{task}}.{{condition}}.{{lang}}.{{split}}.tsv",
    wildcard_constraints:
        split=one_of(EVAL_SPLITS),
        condition=one_of(c for c in CONDITIONS if c not in BEST + REPLICATED),
    conda:
        "../../envs/data.yaml"
    params:
        display_name=lambda wc: display_name(config, wc.model),
    script:
        "../scripts/score_cell.py"


rule seed_cell:
    """The cell of a condition trained with several seeds: the mean over its seed runs, each
    seed's metrics and per-example scores kept for the two-level bootstrap."""
    input:
        metrics=replicate_metrics,
    output:
        metrics=METRICS,
    log:
        f"{LOGS}/seed_cell/{{model}}.{{task}}.{{condition}}.{{lang}}.{{split}}.log",
    benchmark:
        f"{BENCH}/seed_cell/{{model}}.{{task}}.{{condition}}.{{lang}}.{{split}}.tsv",
    wildcard_constraints:
        split=one_of(EVAL_SPLITS),
        condition=one_of(REPLICATED),
    conda:
        "../../envs/data.yaml"
    params:
        seeds=lambda wc: list(GRID[wc.condition].seeds),
    script:
        "../scripts/seed_cell.py"
