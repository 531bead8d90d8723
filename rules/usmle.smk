# medAlpaca's USMLE self-assessment: questions -> answers per (method, generator) -> table + figure.
#   results/usmle/questions.jsonl, questions_summary.json   the questions asked, counts per step
#   results/usmle/{generation,loglik}/{generator}.jsonl     one row per question: prediction, correct
#   results/tables/usmle.{csv,md}, results/figures/usmle.png
from alpacare.usmle.plan import generator_kind, generators_by_method

USMLE = config.get("usmle")
USMLE_PLAN = generators_by_method(config, CONFIG_SOURCE)
USMLE_TARGETS = (
    ["results/tables/usmle.csv", "results/tables/usmle.md", "results/figures/usmle.png"] if USMLE_PLAN else []
)


if USMLE_PLAN:

    rule usmle_questions:
        """The USMLE self-assessment questions asked (image questions left out), with counts per step."""
        input:
            files=planning.usmle_source_files(USMLE),
            code=code("stages.usmle", "usmle.questions"),
        output:
            questions="results/usmle/questions.jsonl",
            summary="results/usmle/questions_summary.json",
        log:
            "results/logs/usmle/questions.log",
        localrule: True
        conda:
            ENVS["api"]
        params:
            source=USMLE["questions"],
        script:
            "../scripts/usmle_questions.py"

    rule usmle_generation:
        """A local model's answers to the USMLE questions, read from its reply (greedy, or medAlpaca's sampling)."""
        input:
            unpack(
                lambda w: {
                    "questions": "results/usmle/questions.jsonl",
                    "template": planning.usmle_setting(USMLE, "generation", "prompt"),
                    **planning.usmle_model(config, w.generator)[0],
                }
            ),
            code=code(
                "stages.usmle", "stages.common", "usmle.answers", "template", "data", "llm", "checkpoints", "hardware"
            ),
        output:
            "results/usmle/generation/{generator}.jsonl",
        log:
            "results/logs/usmle/generation/{generator}.log",
        wildcard_constraints:
            generator=names_running("generators", among=USMLE_PLAN.get("generation", [])),
        conda:
            ENVS["train"]
        threads: model_threads("generate", generator_backbone)
        resources:
            **model_resources("generate", generator_backbone),
        params:
            kind=lambda w: generator_kind(config, w.generator),
            spec=lambda w: planning.usmle_model(config, w.generator)[1],
            max_new_tokens=lambda w: planning.usmle_setting(USMLE, "generation", "max_new_tokens"),
            decoding=lambda w: planning.usmle_setting(USMLE, "generation", "decoding") or "greedy",
        script:
            "../scripts/usmle_generation.py"

    # API models answer on the submit host (it has the internet): the same rule, run locally
    use rule usmle_generation as usmle_generation_api with:
        """An API model's answers to the USMLE questions, read from its reply (on the submit host)."""
        wildcard_constraints:
            generator=names_running("generators", local_model=False, among=USMLE_PLAN.get("generation", [])),
        localrule: True
        conda:
            ENVS["api"]

    rule usmle_loglik:
        """A local model's answers to the USMLE questions: the option of highest length-normalised log-likelihood."""
        input:
            unpack(
                lambda w: {
                    "questions": "results/usmle/questions.jsonl",
                    "template": planning.usmle_setting(USMLE, "loglik", "prompt"),
                    **planning.usmle_model(config, w.generator)[0],
                }
            ),
            code=code(
                "stages.usmle", "stages.common", "usmle.answers", "template", "data", "llm", "checkpoints", "hardware"
            ),
        output:
            "results/usmle/loglik/{generator}.jsonl",
        log:
            "results/logs/usmle/loglik/{generator}.log",
        wildcard_constraints:
            generator=names_running("generators", among=USMLE_PLAN.get("loglik", [])),
        conda:
            ENVS["train"]
        threads: model_threads("generate", generator_backbone)
        resources:
            **model_resources("generate", generator_backbone),
        params:
            kind=lambda w: generator_kind(config, w.generator),
            spec=lambda w: planning.usmle_model(config, w.generator)[1],
            normalisation=lambda w: planning.usmle_setting(USMLE, "loglik", "normalisation"),
        script:
            "../scripts/usmle_loglik.py"

    USMLE_ANSWERS = {(m, g): f"results/usmle/{m}/{g}.jsonl" for m, gs in USMLE_PLAN.items() for g in gs}

    rule usmle_report:
        """The USMLE accuracy table and figure per generator, method and step, beside medAlpaca's published accuracies."""
        input:
            answers=list(USMLE_ANSWERS.values()),
            summary="results/usmle/questions_summary.json",
            published=USMLE["published"],
            code=code("stages.usmle", "usmle.scores"),
        output:
            csv=report("results/tables/usmle.csv", caption="../report/usmle_table.rst", category="USMLE"),
            md="results/tables/usmle.md",
            figure=report("results/figures/usmle.png", caption="../report/usmle.rst", category="USMLE"),
        log:
            "results/logs/usmle/report.log",
        localrule: True
        conda:
            ENVS["report"]
        params:
            answer_keys=[list(k) for k in USMLE_ANSWERS],
            published_names=USMLE.get("published_names", {}),
        script:
            "../scripts/usmle_report.py"
