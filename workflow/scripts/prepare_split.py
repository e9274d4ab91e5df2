from icldistill.data import prepare_split
from icldistill.hub import use_offline_hub
from icldistill.logs import to_file

to_file(snakemake.log[0])
# Hub data offline, from the configured cache (where it is read from, not what: the config)
use_offline_hub(snakemake.config.get("hub"))
w = snakemake.wildcards
prepare_split(
    snakemake.params.source,
    w.task,
    w.split,
    w.lang,
    snakemake.params.cap,
    snakemake.params.seed,
    snakemake.output.rows,
    snakemake.output.manifest,
)
