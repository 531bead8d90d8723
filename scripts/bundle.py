from alpacare.bundle import reply_lists, write_bundle
from alpacare.llm import Cache
from alpacare.snake import setup

setup(snakemake)
write_bundle(
    snakemake.output[0], config=snakemake.params.config, configfiles=snakemake.input.configfiles,
    cache=Cache(snakemake.config["llm"]["cache"]), verdict_files=snakemake.input.verdicts,
    result_files=snakemake.input.results, lock_files=snakemake.input.locks, inputs=snakemake.params.inputs,
    replies=reply_lists(),
)
