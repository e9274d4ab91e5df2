from icldistill.data import staged_dir
from icldistill.fingerprint import verify_input_folders
from icldistill.hub import local_model, use_offline_hub
from icldistill.logs import to_file
from icldistill.prompts import write_prompt_files

to_file(snakemake.log[0])
# offline, from the configured cache (where it is read from, not what: the config, not params)
hub = use_offline_hub(snakemake.config.get("hub"))
verify_input_folders(snakemake.input.model)
p = snakemake.params
with staged_dir(snakemake.output.prompts) as out:
    write_prompt_files(
        local_model(p.model_path, p.model_source, hub),
        snakemake.wildcards.task,
        p.languages,
        list(snakemake.input.data),
        list(snakemake.input.demos),
        [str(out / f"{lang}.json") for lang in p.languages],
        template_kwargs=p.template_kwargs,
        trust_remote_code=p.trust_remote_code,
        context_length=p.context_length,
        max_new_tokens=p.max_new_tokens,
    )
