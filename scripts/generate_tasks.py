from alpacare.snake import setup
from alpacare.stages.selfinstruct import generate_tasks

setup(snakemake)
p = snakemake.params
generate_tasks(
    snakemake.input.seeds, snakemake.output.tasks, snakemake.output.rejects,
    teacher=p.teacher, spec=p.spec, settings=snakemake.config["llm"], model_dir=snakemake.input.get("model"),
    prompting=p.prompting, run_seed=p.run_seed, requests=p.requests, examples_per_request=p.examples_per_request,
    tasks_per_request=p.tasks_per_request, sampling=dict(p.sampling),
)
