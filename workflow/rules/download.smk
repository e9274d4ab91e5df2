# Fetch once, run offline: every Hugging Face model and data set config the grid loads is
# downloaded by a local job (where Snakemake runs, with network: the login node) into
# hub.cache_dir, at its configured revision; the jobs that load them wait for the marker and
# read the cache with HF_HUB_OFFLINE=1 (icldistill.hub). `snakemake download` runs only these.


rule download:
    """Every download of the grid (nothing for local models, GGUF packages and local data)."""
    input:
        list(download_markers()),


rule download_model:
    """One hub model at its revision (models.<id>.revision; default main), all files but
    other frameworks' weights; HF_TOKEN is read for gated models."""
    output:
        marker=DOWNLOADED_MODEL,
    log:
        f"{LOGS}/download_model/{{model}}.log",
    benchmark:
        f"{BENCH}/download_model/{{model}}.tsv",
    wildcard_constraints:
        model=one_of(HUB_MODELS),
    conda:
        "../../envs/data.yaml"
    params:
        repo_id=lambda wc: config["models"][wc.model]["path"],
        revision=lambda wc: config["models"][wc.model].get("revision"),
    script:
        "../scripts/download_model.py"


rule download_data:
    """One hub data set config (data.revision; default main), downloaded and prepared as
    the Arrow files an offline load reads."""
    output:
        marker=DOWNLOADED_DATA,
    log:
        f"{LOGS}/download_data/{{dataset}}/{{subset}}.log",
    benchmark:
        f"{BENCH}/download_data/{{dataset}}/{{subset}}.tsv",
    wildcard_constraints:
        dataset=one_of(sorted({d.dataset for d in HUB_DATA})),
        subset=one_of(sorted({d.subset for d in HUB_DATA})),
    conda:
        "../../envs/data.yaml"
    params:
        dataset=lambda wc: hub_data_of(wc).dataset,
        name=lambda wc: hub_data_of(wc).name,
        revision=lambda wc: hub_data_of(wc).revision,
    script:
        "../scripts/download_data.py"
