"""The fault tests use the integration testbed's fixtures (testbed, docker_client)."""

from tests.integration.conftest import docker_client, pytest_configure, testbed

__all__ = ["docker_client", "pytest_configure", "testbed"]
