"""The choke points for text bgdeploy did not write: what comes from a spec, a host, a container or a model.

- `markdown`: escaping for reports and PR comments (no raw HTML, no pinging mention, no forged marker, no
  breaking out of a table cell or a code block).
- `commands`: making log lines inert under GitHub Actions (no workflow command can start, no `##[`).
- `secrets`: the one registry of secret values, masked in every output, artefact and exception message.
- `prompts`: withholding the request content a model server logs (users' prompts, replayed captures).

A leaf package: it imports nothing else from bgdeploy, so every layer can use it.
"""
