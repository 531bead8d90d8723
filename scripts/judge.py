from alpacare.judge import OFFICIAL
from alpacare.snake import setup
from alpacare.stages.judge import judge_outputs

setup(snakemake)
j = snakemake.params.judge
judge_outputs(
    snakemake.input.model, snakemake.input.reference, snakemake.output[0], judge_name=snakemake.wildcards.judge,
    method=j["method"], max_tokens=j.get("max_tokens", 100), tie_margin=j.get("tie_margin", 0.0), reasks=j.get("reasks", 0),
    scoring=j.get("scoring", "project"),
    # a prompt file, or AlpaCare's own (alpacare-official, downloaded by the job)
    prompt_file=snakemake.input.get("prompt") or OFFICIAL, spec=snakemake.params.spec, settings=snakemake.config["llm"],
    model_dir=snakemake.input.get("judge_model"),
)
