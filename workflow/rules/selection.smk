# The best λ of a sweep: every member is also evaluated on the dev split (English by default,
# `selection.languages`), the λ with the highest dev score is chosen per (model, task), and
# <name>-best reports that member's test cells. Test scores never enter the choice.


use rule build_prompts as build_select_prompts with:
    input:
        model=model_input,
        downloaded=model_download,
        data=select_data,
        demos=prompt_demos(select_languages),
    output:
        prompts=directory(SELECT_PROMPTS_DIR),
    log:
        f"{LOGS}/build_select_prompts/{{model}}.{{task}}.{{shots}}shot.log",
    benchmark:
        f"{BENCH}/build_select_prompts/{{model}}.{{task}}.{{shots}}shot.tsv",
    params:
        model_path=lambda wc: model_path(wc.model),
        model_source=model_fingerprint,
        languages=select_languages,
        template_kwargs=chat_template_kwargs,
        trust_remote_code=lambda wc: config["models"][wc.model].get(
            "trust_remote_code", False
        ),
        context_length=context_length,
        max_new_tokens=answer_budget,


use rule infer as infer_select with:
    input:
        model=model_input,
        downloaded=model_download,
        adapter=condition_adapter,
        prompts=lambda wc: SELECT_PROMPTS_DIR.format(
            model=wc.model, task=wc.task, shots=condition_shots(wc)
        ),
        data=select_data,
    output:
        predictions=directory(SELECT_PREDICTIONS_DIR),
    log:
        f"{LOGS}/infer_select/{{model}}.{{task}}.{{condition}}.log",
    benchmark:
        f"{BENCH}/infer_select/{{model}}.{{task}}.{{condition}}.tsv",
    params:
        model_path=lambda wc: model_path(wc.model),
        model_source=model_fingerprint,
        languages=select_languages,
        settings=inference_settings,


use rule score_cell as score_select with:
    input:
        predictions=select_predictions,
        data=DATA.replace("{split}", "select"),
    output:
        metrics=SELECT_METRICS,
    log:
        f"{LOGS}/score_select/{{model}}.{{task}}.{{condition}}.{{lang}}.log",
    benchmark:
        f"{BENCH}/score_select/{{model}}.{{task}}.{{condition}}.{{lang}}.tsv",


use rule seed_cell as seed_select with:
    input:
        metrics=replicate_metrics(SELECT_METRICS),
    output:
        metrics=SELECT_METRICS,
    log:
        f"{LOGS}/seed_select/{{model}}.{{task}}.{{condition}}.{{lang}}.log",
    benchmark:
        f"{BENCH}/seed_select/{{model}}.{{task}}.{{condition}}.{{lang}}.tsv",


rule select_lambda:
    """The sweep member with the best mean dev score of one (model, task)."""
    input:
        dev=lambda wc: sweep_metrics(SELECT_METRICS, wc, select_languages(wc)),
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
        test=lambda wc: sweep_metrics(METRICS, wc, [wc.lang]),
    output:
        metrics=METRICS,
    log:
        f"{LOGS}/best_cell/{{model}}.{{task}}.{{condition}}.{{lang}}.log",
    benchmark:
        f"{BENCH}/best_cell/{{model}}.{{task}}.{{condition}}.{{lang}}.tsv",
    wildcard_constraints:
        condition=one_of(BEST),
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/best_cell.py"
