"""The GitHub workflows' logic as Python (``bankflow-infra workflow ...``): pure checks and texts
(``tools``, ``text``), the release-tag edit of a stack file (``stack_files``) and the git/gh steps
(``git``). No pulumi and no stack access: jobs that can push to the repository run these."""
