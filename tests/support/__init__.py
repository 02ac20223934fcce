"""Rigs shared by the test folders: ports, tools, the real sshd, stack-outputs documents."""
