"""Pulumi entry point: load and validate the stack's settings, build it, export the contract."""

from bankflow_infra import program

program.export(program.build(program.load_settings()))
