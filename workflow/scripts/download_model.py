from icldistill.hub import download_model, hub_home
from icldistill.logs import to_file

to_file(snakemake.log[0])
p = snakemake.params
# where the files go, not what they are: from the config, not params (a moved cache reruns nothing)
download_model(p.repo_id, p.revision, hub_home(snakemake.config.get("hub")), snakemake.output.marker)
