rule prepare_split:
    """Load, validate and (seeded) sample one split of one task and language."""
    output:
        rows=DATA,
        manifest=DATA_MANIFEST,
    log:
        f"{LOGS}/prepare_split/{{task}}.{{split}}.{{lang}}.log",
    conda:
        "../../envs/data.yaml"
    params:
        source=config["data"],
        cap=lambda wc: split_cap(wc.split),
        seed=config["eval"].get("seed", 1234),
    script:
        "../scripts/prepare_split.py"
