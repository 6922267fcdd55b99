"""The benchmark harness (``make bench``): measured speed, side by side, as the record grows.

Run ``python -m bench --help`` for options. Results go to ``bench/results/``.
"""
