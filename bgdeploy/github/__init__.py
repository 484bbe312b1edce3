"""The GitHub Action's side of bgdeploy: the run's context, the mode for an event, the PR comment, GitHub
Deployments (and the release record their payload carries for offline plans), workflow commands, and the
`bgdeploy ci` runner that ties them to the deploy cycle. The HTTP client itself is a transport
(`bgdeploy.transports.github`); `client.GitHubApi` is the interface this package uses.
"""
