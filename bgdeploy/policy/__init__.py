"""The host-side policy: a file on the GPU host, owned by its admin, that bounds what any spec may do there.

`models`/`schema`/`load` read the file, `evaluate` judges a spec against it (pure), `access` decides from
`stat` output whether the deploy user could rewrite it, and `host` puts these together over a connection.
"""
