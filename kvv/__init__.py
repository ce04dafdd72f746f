"""kvv: columnar analysis of B -> K nu nubar and B -> K* nu nubar at Belle II."""

__version__ = "0.1.0"
