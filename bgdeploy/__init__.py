"""bgdeploy: zero-downtime blue-green deploys of vLLM on your own GPU servers."""

__version__ = "0.1.0"
