"""The shared contract: facts that the renderer, the Pulumi program, the host agent, the ops CLI
and the workflows must agree on, stated once.

Stdlib only, and shipped to the droplet beside the host agent, so the agent reads the very
definitions the renderer wrote with. Every other package imports these; nothing here imports
anything of this repository but ``contract`` itself.

- ``services``: environments, app service names, the branch each environment deploys from.
- ``grammar``: what a stack name, an image tag and a release id look like.
- ``layout``: the host's directory tree (``/opt/bankflow`` and its folders) and the agent path.
- ``release``: release ids, the bundle manifest's name and schema, compose project names.
- ``upstreams``: the nginx upstream include a release switch rewrites.
- ``exit_codes``: what every command's exit status means (agent and CLI alike).
- ``outputs``: the stack outputs the program exports and the CLI reads, as one typed value.
"""
