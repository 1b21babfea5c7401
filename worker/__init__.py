"""framescribe worker: the pipeline, its pure core and the adapters at its edges."""

__version__ = "0.1.0"
