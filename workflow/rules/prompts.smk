rule build_prompts:
    """Zero- or k-shot prompts of every language of one (split, model, task), chat-templated."""
    input:
        model=model_input,
        downloaded=model_download,
        data=split_data,
        demos=prompt_demos(split_languages),
    output:
        prompts=directory(PROMPTS_DIR),
    log:
        f"{LOGS}/build_prompts/{{model}}.{{task}}.{{shots}}shot.{{split}}.log",
    benchmark:
        f"{BENCH}/build_prompts/{{model}}.{{task}}.{{shots}}shot.{{split}}.tsv",
    wildcard_constraints:
        split=one_of(EVAL_SPLITS),
    conda:
        "../../envs/inference.yaml"
    params:
        model_path=lambda wc: model_path(wc.model),
        model_source=model_fingerprint,
        languages=split_languages,
        template_kwargs=chat_template_kwargs,
        trust_remote_code=lambda wc: config["models"][wc.model].get(
            "trust_remote_code", False
        ),
        context_length=context_length,
        max_new_tokens=answer_budget,
    script:
        "../scripts/build_prompts.py"
