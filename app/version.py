"""The application version: 0.N.0 is the state of the code at checkpoint ch-N."""

__version__ = "0.4.0"
