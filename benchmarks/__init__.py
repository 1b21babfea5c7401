"""Benchmarks for framescribe: ``python -m benchmarks`` (``--smoke`` for a tiny CI run).

Every goal of issue 10 is printed as a ratio against a baseline timed in the same run (medians of several
repetitions, interleaved, so a busy machine slows both sides alike), and everything lands in
``benchmarks/results.json``. Media is generated with ffmpeg's lavfi sources and cached in
``benchmarks/.media/`` (not committed).
"""
