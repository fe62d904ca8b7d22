"""Reports: markdown/CSV/HTML tables and plots from results files; regression comparison."""
