from alpacare.snake import setup
from alpacare.stages.usmle import answer_by_generation

setup(snakemake)
answer_by_generation(
    snakemake.input.questions, snakemake.input.template, snakemake.output[0], generator=snakemake.wildcards.generator,
    kind=snakemake.params.kind, spec=snakemake.params.spec, settings=snakemake.config["llm"],
    model_dir=snakemake.input.get("model"), max_new_tokens=snakemake.params.max_new_tokens,
    decoding=snakemake.params.decoding,
)
