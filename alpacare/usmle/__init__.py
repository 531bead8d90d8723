"""medAlpaca's USMLE self-assessment benchmark: questions (loading and checks), answers (prompts,
option extraction, log-likelihood choice), scores (intervals, tables, figure) and the plan of
which generator is asked by which method. Split into modules so that a rule depends only on
the code that decides its artifact: editing the figure never reruns a model."""
