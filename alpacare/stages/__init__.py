"""One module per pipeline stage: plain paths and settings in, artifacts out.
Snakemake scripts only unpack `snakemake.*` and call these; tests call them directly.
Each rule depends on its stage module (rules/common.smk: code()), so an edit reruns only that stage."""
