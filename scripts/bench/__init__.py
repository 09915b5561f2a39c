"""Side-by-side benchmarks of headstart against transformers' Trainer and a plain PyTorch loop.

    python -m scripts.bench textcls [--quick] [--repeats N] [--out file.json]
    make bench ARGS=--quick          # every comparison, short mode

See ``python -m scripts.bench --help`` and docs/performance.md.
"""
