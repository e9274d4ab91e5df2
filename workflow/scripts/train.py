import torch

from icldistill.fingerprint import verify_input_folders
from icldistill.hub import local_model, use_offline_hub
from icldistill.logs import to_file
from icldistill.train.run import run_training

to_file(snakemake.log[0])
# offline, from the configured cache (where it is read from, not what: the config, not params)
hub = use_offline_hub(snakemake.config.get("hub"))
verify_input_folders(snakemake.input.model)
torch.set_num_threads(snakemake.threads)
p = snakemake.params
# from the config, not params: it changes how training computes, not what (see TrainSettings)
training = snakemake.config.get("training") or {}
checkpointing = {k: training[k] for k in ("activation_checkpointing", "checkpoint_above_tokens") if k in training}
run_training(
    local_model(p.model_path, p.model_source, hub),
    p.tasks,
    list(snakemake.input.train),
    list(snakemake.input.get("teacher", [])),
    snakemake.output.adapter,
    snakemake.output.log_csv,
    {**p.settings, **checkpointing},
    template_kwargs=p.template_kwargs,
    trust_remote_code=p.trust_remote_code,
    dev_files=list(snakemake.input.get("dev", [])),
)
