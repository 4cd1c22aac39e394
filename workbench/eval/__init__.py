"""Evaluation layer: encoders under comparison, retrieval metrics, safety, reasoning, MTEB and maps.

Each evaluation is a library function that returns a result object; the CLI, notebooks and
``analyses/`` call the same functions. Plotting lives one layer up, in :mod:`workbench.report`.
"""
