"""The bluegreen.yaml spec: models, schema and the loader. Pure: pydantic, yaml and jsonschema only."""

from bgdeploy.spec.load import LoadedSpec, load_spec, parse_spec_text
from bgdeploy.spec.models import Spec

__all__ = ["LoadedSpec", "Spec", "load_spec", "parse_spec_text"]
