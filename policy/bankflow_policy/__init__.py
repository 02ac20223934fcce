"""BankFlow's CrossGuard rules, importable and typed so tests can run them without the engine.

The pack is deliberately independent of ``bankflow_infra``: a reviewer's invariants must not
come from the code they check, and the pack runs in its own virtualenv (``policy/venv``).
"""
