"""Results on disk: atomic files, tables, plots, cost meters."""
