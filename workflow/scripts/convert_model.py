from icldistill.logs import to_file
from icldistill.models import convert_gguf

to_file(snakemake.log[0])
convert_gguf(snakemake.params.package, snakemake.params.file, snakemake.output.model, snakemake.params.dtype)
