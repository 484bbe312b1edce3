"""A deployment's whole life on a host beyond the deploy cycle: what is deployed there (`bgdeploy list`)
and taking one down cleanly (`bgdeploy remove`)."""
