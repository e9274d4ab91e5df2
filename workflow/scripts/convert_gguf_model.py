from icldistill.logs import to_file
from icldistill.models import convert_gguf

to_file(snakemake.log[0])
p = snakemake.params
convert_gguf(p.package, p.file, snakemake.output.model, p.dtype, assemble=p.assemble)
