from alpacare.selfinstruct import OFFICIAL
from alpacare.snake import setup
from alpacare.stages.selfinstruct import generate_tasks

setup(snakemake)
p = snakemake.params
generate_tasks(
    snakemake.input.seeds, snakemake.output.tasks, snakemake.output.rejects, snakemake.output.summary,
    teacher=p.teacher, spec=p.spec, settings=snakemake.config["llm"], model_dir=snakemake.input.get("model"),
    prompting=p.prompting, run_seed=p.run_seed, requests=p.requests, examples_per_request=p.examples_per_request,
    tasks_per_request=p.tasks_per_request, sampling=dict(p.sampling),
    # a prompt file, or AlpaCare's own (alpacare-official, downloaded by the job)
    prompt_path=snakemake.input.get("prompt") or ("prompt" in p.official_prompts and OFFICIAL),
    system_path=snakemake.input.get("system") or ("system" in p.official_prompts and OFFICIAL) or None,
    target_tasks=p.target_tasks, dedup_settings=p.dedup,
)
