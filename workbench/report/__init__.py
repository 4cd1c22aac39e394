"""Report layer: plotly figures (HTML and PNG, offline), lens plots, map figures, evaluation reports,
cards, and the notebook display of results (:mod:`.notebook`)."""
