"""Results on disk: atomic files, tables, plots, cost meters."""

# When a run rewrites its derived files (--report-every), in the order events come: after
# a step, after a method, when the run ends. Here so that config imports it cheaply.
REPORT_EVERY = ("step", "method", "run")
