from icldistill.data import prepare_split
from icldistill.logs import to_file

to_file(snakemake.log[0])
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
