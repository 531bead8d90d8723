from alpacare.models import prepare_backbone
from alpacare.snake import setup

setup(snakemake)
prepare_backbone(snakemake.params.spec, snakemake.output[0])
