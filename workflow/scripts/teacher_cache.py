import torch

from icldistill.fingerprint import verify_input_folders
from icldistill.hub import local_model, use_offline_hub
from icldistill.logs import to_file
from icldistill.teacher import build_teacher_cache


def main():
    to_file(snakemake.log[0])
    # offline, from the configured cache (where it is read from, not what: the config, not params)
    hub = use_offline_hub(snakemake.config.get("hub"))
    verify_input_folders(snakemake.input.model)
    torch.set_num_threads(snakemake.threads)
    p = snakemake.params
    demos = list(snakemake.input.demos)
    build_teacher_cache(
        local_model(p.model_path, p.model_source, hub),
        snakemake.wildcards.task,
        snakemake.input.rows,
        demos[0] if demos else None,
        snakemake.output.cache,
        top_k=p.settings["top_k"],
        settings=p.settings,
        model_name=p.display_name,
        template_kwargs=p.template_kwargs,
        stats_file=snakemake.output.stats,
    )


# vLLM starts its engine in spawned processes that import this module again
if __name__ == "__main__":
    main()
