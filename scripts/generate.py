from alpacare.snake import setup
from alpacare.stages.generate import generate_outputs

setup(snakemake)
generate_outputs(
    snakemake.input.testset, snakemake.output[0], generator=snakemake.wildcards.generator, kind=snakemake.params.kind,
    settings=snakemake.config["llm"], model_dir=snakemake.input.get("model"),
    max_new_tokens=snakemake.params.max_new_tokens, max_length=snakemake.params.max_length, **snakemake.params.plan,
)
