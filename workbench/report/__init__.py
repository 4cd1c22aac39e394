"""Report layer: plotly figures (HTML and PNG), lens plots, map figures, evaluation reports, cards."""
