"""Training layer: prompt sources, the LLM's own responses, pairs, the trainer and quality checks."""
