from pathlib import Path

import torch

from icldistill.data import staged_dir
from icldistill.fingerprint import verify_input_folders
from icldistill.hub import local_model, use_offline_hub
from icldistill.inference import infer
from icldistill.logs import to_file


def main():
    to_file(snakemake.log[0])
    # offline, from the configured cache (where it is read from, not what: the config, not params)
    hub = use_offline_hub(snakemake.config.get("hub"))
    verify_input_folders([*snakemake.input.model, *snakemake.input.adapter, snakemake.input.prompts])
    torch.set_num_threads(snakemake.threads)
    p = snakemake.params
    prompts = Path(snakemake.input.prompts)
    with staged_dir(snakemake.output.predictions) as out:
        infer(
            local_model(p.model_path, p.model_source, hub),
            snakemake.wildcards.task,
            [str(prompts / f"{lang}.json") for lang in p.languages],
            list(snakemake.input.data),
            [str(out / f"{lang}.jsonl") for lang in p.languages],
            p.settings,
            adapter=snakemake.input.adapter[0] if snakemake.input.adapter else None,
            stats_file=out / "stats.json",
        )


# vLLM starts its engine in spawned processes that import this module again
if __name__ == "__main__":
    main()
