from alpacare.snake import setup
from alpacare.stages.finetune import finetune, split_settings

setup(snakemake)
# resumes from results/checkpoints/{model}.resume/ if an earlier attempt was killed
runtime = split_settings(snakemake.config["models"][snakemake.wildcards.model], snakemake.config["run_seed"])[1]
data = [{**part, "path": path} for part, path in zip(snakemake.params.parts, snakemake.input.data)]
finetune(data, snakemake.input.backbone, snakemake.output[0], dict(snakemake.params.hp), runtime)
