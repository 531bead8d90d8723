from alpacare.snake import setup
from alpacare.stages.generate import generate_outputs

setup(snakemake)
plan = dict(snakemake.params.plan)
plan.pop("pin", None)   # a param so that a new checksum reimports; the download checks the pin itself
generate_outputs(
    snakemake.input.testset, snakemake.output[0], generator=snakemake.wildcards.generator, kind=snakemake.params.kind,
    settings=snakemake.config["llm"], model_dir=snakemake.input.get("model"),
    max_new_tokens=snakemake.params.max_new_tokens, **plan,
)
