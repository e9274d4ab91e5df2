# The best λ of a sweep: every member is also evaluated on the select split (dev rows; English by
# default, `selection.languages`) by the same prompt, inference and scoring rules as the test
# split ({split} = select), the λ with the highest dev score is chosen per (model, task), and
# <name>-best reports that member's test cells. Test scores never enter the choice.


rule select_lambda:
    """The sweep member with the best mean dev score of one (model, task)."""
    input:
        dev=lambda wc: sweep_metrics(
            wc, SELECT_SPLIT, selection_languages(config, wc.task)
        ),
    output:
        selection=SELECTION,
    log:
        f"{LOGS}/select_lambda/{{model}}.{{task}}.{{condition}}.log",
    benchmark:
        f"{BENCH}/select_lambda/{{model}}.{{task}}.{{condition}}.tsv",
    wildcard_constraints:
        condition=one_of(BEST),
    conda:
        "../../envs/data.yaml"
    params:
        candidates=lambda wc: {
            c: GRID[c].lam for c in GRID.sweep_members(wc.condition)
        },
    script:
        "../scripts/select_lambda.py"


rule best_cell:
    """The test cell of the λ chosen on dev, reported as <name>-best."""
    input:
        selection=SELECTION,
        test=lambda wc: sweep_metrics(wc, wc.split, [wc.lang]),
    output:
        metrics=METRICS,
    log:
        f"{LOGS}/best_cell/{{model}}.{{task}}.{{condition}}.{{lang}}.{{split}}.log",
    benchmark:
        f"{BENCH}/best_cell/{{model}}.{{task}}.{{condition}}.{{lang}}.{{split}}.tsv",
    wildcard_constraints:
        split=one_of([eval_split()]),
        condition=one_of(BEST),
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/best_cell.py"
