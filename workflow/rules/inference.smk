def condition_prompts(wildcards):
    return PROMPTS_DIR.format(model=wildcards.model, task=wildcards.task, shots=condition_shots(wildcards))


def inference_settings(wildcards):
    """Exactly the settings predictions depend on (a change reruns only affected jobs)."""
    gen = config["generation"]
    model = config["models"][wildcards.model]
    return {
        "backend": gen.get("backend", "hf"),
        "batch_size": gen.get("batch_size", 16),
        "reuse_prefix": gen.get("reuse_prefix", True),
        "max_new_tokens": (gen.get("max_new_tokens") or {}).get(wildcards.task),
        "scoring": (config.get("scoring") or {}).get(wildcards.task, "generate"),
        "dtype": model.get("dtype", "auto"),
        "trust_remote_code": model.get("trust_remote_code", False),
    }


rule infer:
    """Greedy predictions of one (model, task, condition) for all its languages; the model is
    loaded once per job."""
    input:
        model=model_input,
        prompts=condition_prompts,
        data=eval_data,
    output:
        predictions=directory(PREDICTIONS_DIR),
    params:
        model_path=lambda wc: model_path(wc.model),
        languages=languages_of,
        settings=inference_settings,
    log:
        f"{LOGS}/infer/{{model}}.{{task}}.{{condition}}.log",
    conda:
        "../../envs/inference.yaml"
    threads: 8
    script:
        "../scripts/run_inference.py"
