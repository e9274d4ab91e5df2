from icldistill.logs import to_file
from icldistill.runrecord import build_record, write_record

to_file(snakemake.log[0])
record = build_record(snakemake.config, snakemake.params.workflow_dir)
if record["config_hash"] != snakemake.params.config_hash:
    raise RuntimeError("run record: the job's config differs from the one the workflow planned with")
write_record(record, snakemake.output.record)
