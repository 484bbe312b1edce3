"""`bgdeploy init`: from a GPU host's address to a first `bluegreen.yaml` that validates."""
