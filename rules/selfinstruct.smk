# Self-instruct: seed tasks -> generated tasks -> deduplicated tasks -> responses (+ the dataset card).
SI = config.get("selfinstruct", {})
SI_DEDUP = SI.get("dedup", {})


rule generate_tasks:
    """Self-instruct: the teacher's new tasks from sampled seed tasks, with the rejects and a summary."""
    input:
        unpack(
            lambda w: {
                "seeds": "results/selfinstruct/seeds.jsonl",
                **planning.llm_inputs(config, SI["teacher"]),
                **planning.selfinstruct_files(
                    prompt=planning.selfinstruct_prompt(SI), system=planning.selfinstruct_system(SI)
                ),
            }
        ),
        code=code(
            "stages.selfinstruct",
            "stages.common",
            "selfinstruct",
            "llm",
            "checkpoints",
            "hardware",
            "dedup",
            "rouge",
            "data",
        ),
    output:
        tasks="results/selfinstruct/tasks.raw.jsonl",
        rejects="results/selfinstruct/rejects.jsonl",
        summary="results/selfinstruct/generation.json",
    log:
        "results/logs/selfinstruct/generate_tasks.log",
    localrule: calls_api(SI.get("teacher"))
    conda:
        llm_env(SI.get("teacher"))
    threads: model_threads("selfinstruct", llm_backbone(SI.get("teacher")))
    resources:
        **model_resources("selfinstruct", llm_backbone(SI.get("teacher"))),
    params:
        teacher=SI.get("teacher"),
        spec=planning.public(config["llms"][SI["teacher"]]) if SI else None,
        prompting=SI.get("prompting"),
        run_seed=config["run_seed"],
        requests=SI.get("requests"),
        target_tasks=SI.get("target_tasks"),
        # with a target, generation stops on the dedup's count, so the dedup settings decide the output
        dedup=SI_DEDUP if SI.get("target_tasks") else None,
        examples_per_request=SI.get("examples_per_request"),
        tasks_per_request=SI.get("tasks_per_request"),
        sampling=SI.get("sampling"),
        official_prompts=planning.selfinstruct_official_pins(SI),
    script:
        "../scripts/generate_tasks.py"


rule dedup:
    """The generated tasks without near-duplicates (ROUGE-L against the seeds and each other), with a report."""
    input:
        tasks="results/selfinstruct/tasks.raw.jsonl",
        seeds="results/selfinstruct/seeds.jsonl",
        code=code("stages.selfinstruct", "dedup", "rouge"),
    output:
        tasks="results/selfinstruct/tasks.jsonl",
        report="results/selfinstruct/dedup_report.json",
    log:
        "results/logs/selfinstruct/dedup.log",
    localrule: True
    conda:
        ENVS["api"]
    params:
        threshold=SI_DEDUP.get("threshold"),
        policy=SI_DEDUP.get("policy"),
        target_tasks=SI.get("target_tasks"),
    script:
        "../scripts/dedup.py"


rule respond:
    """The responder's answer to each deduplicated task."""
    input:
        unpack(
            lambda w: {
                "tasks": "results/selfinstruct/tasks.jsonl",
                **planning.llm_inputs(config, SI["responder"]),
                **planning.selfinstruct_files(system=SI.get("responder_system_prompt")),
            }
        ),
        code=code("stages.selfinstruct", "stages.common", "selfinstruct", "data", "llm", "checkpoints", "hardware"),
    output:
        "results/selfinstruct/responses.jsonl",
    log:
        "results/logs/selfinstruct/respond.log",
    localrule: calls_api(SI.get("responder"))
    conda:
        llm_env(SI.get("responder"))
    threads: model_threads("selfinstruct", llm_backbone(SI.get("responder")))
    resources:
        **model_resources("selfinstruct", llm_backbone(SI.get("responder"))),
    params:
        responder=SI.get("responder"),
        spec=planning.public(config["llms"][SI["responder"]]) if SI else None,
        sampling=SI.get("response_sampling"),
        run_seed=config["run_seed"],
    script:
        "../scripts/respond.py"


SI_DATASETS = [n for n, spec in config.get("datasets", {}).items() if spec.get("source") == "selfinstruct"]


rule dataset_card:
    """A Markdown dataset card of a self-instructed training set: counts at every step, sources, models, prompts."""
    input:
        seeds="results/selfinstruct/seeds.jsonl",
        summary="results/selfinstruct/generation.json",
        rejects="results/selfinstruct/rejects.jsonl",
        report="results/selfinstruct/dedup_report.json",
        responses="results/selfinstruct/responses.jsonl",
        code=code("stages.stats", "stats", "data", "seeds", "selfinstruct"),
    output:
        report(
            "results/data/{dataset}.card.md",
            caption="../report/dataset_card.rst",
            category="Data statistics",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "content": "dataset card (Markdown)"},
        ),
    log:
        "results/logs/dataset_card/{dataset}.log",
    wildcard_constraints:
        dataset="|".join(re.escape(n) for n in SI_DATASETS) or "(?!)",
    localrule: True
    conda:
        ENVS["report"]
    params:
        seed_sources=config.get("seeds"),
        responder=lambda w: {
            "name": SI.get("responder"),
            **planning.public(config["llms"][SI["responder"]]),
            "sampling": SI.get("response_sampling"),
            "system_prompt": SI.get("responder_system_prompt"),
        },
    script:
        "../scripts/dataset_card.py"
