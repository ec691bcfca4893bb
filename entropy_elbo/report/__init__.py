"""Terminal output: the only package that imports rich. Data goes to stdout, progress and notes to stderr.

One module per command's output (`estimate`, `inspection`, `collapse`, `selection`, `comparison`) over the
shared `console` (the two streams), `figures` (how a number is printed) and `progress`. The figures written to
files live in `entropy_elbo.plot`; their names are kept here for the command line.
"""

from entropy_elbo.plot import import_pyplot, plot_bic, plot_collapse
from entropy_elbo.report.collapse import collapse_bars, collapse_settings_line, collapse_table, print_collapse
from entropy_elbo.report.comparison import comparison_table, print_comparison, short_label
from entropy_elbo.report.console import Stdout, err, message, out, print_json, stdout
from entropy_elbo.report.estimate import estimate_table, iwae_note, iwae_rows, print_estimate
from entropy_elbo.report.figures import fmt, short
from entropy_elbo.report.figures import fmt as _fmt  # the name the command line and the tests know
from entropy_elbo.report.inspection import FLAG_WIDTH, inspection_table, print_inspection, print_reading, wild_summary
from entropy_elbo.report.progress import rows_progress, work_progress
from entropy_elbo.report.selection import print_selection, selection_tables

__all__ = [
    "FLAG_WIDTH",
    "Stdout",
    "_fmt",
    "collapse_bars",
    "collapse_settings_line",
    "collapse_table",
    "comparison_table",
    "err",
    "estimate_table",
    "fmt",
    "import_pyplot",
    "inspection_table",
    "iwae_note",
    "iwae_rows",
    "message",
    "out",
    "plot_bic",
    "plot_collapse",
    "print_collapse",
    "print_comparison",
    "print_estimate",
    "print_inspection",
    "print_json",
    "print_reading",
    "print_selection",
    "rows_progress",
    "selection_tables",
    "short",
    "short_label",
    "stdout",
    "wild_summary",
    "work_progress",
]
