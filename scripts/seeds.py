from alpacare.snake import setup
from alpacare.stages.data import prepare_seeds

setup(snakemake)
prepare_seeds(list(snakemake.params.sources), snakemake.output[0])
