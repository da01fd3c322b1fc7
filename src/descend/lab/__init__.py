"""The lab: problems, runs and pictures built on the NumPy and torch fronts."""

from descend.lab.fit_line import FitLineResult, default_line_data, fit_line

__all__ = ["FitLineResult", "default_line_data", "fit_line"]
