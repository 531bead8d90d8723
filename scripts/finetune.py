from alpacare.snake import setup
from alpacare.stages.finetune import finetune

setup(snakemake)
finetune(list(snakemake.input.data), list(snakemake.params.caps), snakemake.input.backbone, snakemake.output[0],
         dict(snakemake.params.hp))
