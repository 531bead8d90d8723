from alpacare.snake import setup
from alpacare.stages.dataset import build_dataset

setup(snakemake)
build_dataset(snakemake.output[0], dict(snakemake.params.spec), responses_path=(snakemake.input.responses or [None])[0])
