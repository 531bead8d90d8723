from alpacare.snake import setup
from alpacare.stages.finetune import finetune, runtime_settings

setup(snakemake)
# resumes from results/checkpoints/{model}.resume/ if an earlier attempt was killed
runtime = runtime_settings(snakemake.config, snakemake.wildcards.model)
data = [{**part, "path": path} for part, path in zip(snakemake.params.parts, snakemake.input.data)]
finetune(data, snakemake.input.backbone, snakemake.output[0], dict(snakemake.params.hp), runtime)
