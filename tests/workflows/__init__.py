"""The GitHub workflows: lint (actionlint + shellcheck) and the wiring users rely on."""
