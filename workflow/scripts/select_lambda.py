from icldistill.aggregate import select_lambda
from icldistill.logs import to_file

to_file(snakemake.log[0])
select_lambda(
    list(snakemake.input.dev),
    snakemake.params.candidates,
    snakemake.wildcards.condition,
    snakemake.output.selection,
)
