"""Analyses over explanations: models compared, layers swept, methods evaluated, a data set audited."""
