"""The pilot workbench: golden question sets, configurations (model, retrieval, cost), runs
that answer every golden question as a chosen person would, their measures, and
comparisons between runs. It sits above ``inference`` and uses it; nothing below imports
it (docs/pilot.md)."""
