from alpacare.snake import setup
from alpacare.stages import prepare_seeds

setup(snakemake)
prepare_seeds(list(snakemake.input), snakemake.output[0])
