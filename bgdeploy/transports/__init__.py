"""The only modules that touch the world: SSH (paramiko), the Docker Engine API, HTTP (httpx), GitHub."""
