from icldistill.hub import data_cache, download_data, hub_home
from icldistill.logs import to_file

to_file(snakemake.log[0])
p = snakemake.params
# where the files go, not what they are: from the config, not params (a moved cache reruns nothing)
cache = data_cache(snakemake.config["data"], hub_home(snakemake.config.get("hub")))
download_data(p.dataset, p.name, p.revision, cache, snakemake.output.marker)
