# Regenerate the figures and tables in figures/ from the shipped checkpoints (see analyses/README.md).
# Only entries whose inputs changed since their last run are recomputed; stamps in figures/.stamps.json.
#   make figures                          # every stale entry except the expensive ones
#   make figures FIGURES_ARGS=--list      # what is up to date, stale or missing
#   make figures FIGURES_ARGS="--only table1 --force"

FIGURES_ARGS ?=

#   make docs                             # rewrite the numbers quoted in README, cards and guides from the JSON

#   make notebooks                        # re-execute the notebooks and store their outputs

.PHONY: figures docs notebooks

figures:
	workbench figures $(FIGURES_ARGS)

docs:
	python analyses/render_docs.py

notebooks:
	python notebooks/execute.py
