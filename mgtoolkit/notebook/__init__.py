"""Everything that shows: plots, inline display, teaching helpers, history, widget panels. The only place that imports IPython, matplotlib or ipywidgets."""
