import torch

from icldistill.logs import to_file
from icldistill.teacher import build_teacher_cache


def main():
    to_file(snakemake.log[0])
    torch.set_num_threads(snakemake.threads)
    p = snakemake.params
    build_teacher_cache(
        p.model_path,
        snakemake.wildcards.task,
        snakemake.input.train,
        snakemake.output.cache,
        shots=int(snakemake.wildcards.tshots),
        top_k=p.settings["top_k"],
        seed=p.data["seed"],
        max_examples=p.data["max_examples"],
        demo_shots=p.data["demo_shots"],
        settings=p.settings,
        model_name=p.display_name,
    )


# vLLM starts its engine in spawned processes that import this module again
if __name__ == "__main__":
    main()
