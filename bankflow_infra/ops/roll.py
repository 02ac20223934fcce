"""The rolling deploy across the app droplets behind the load balancer (issue 13): the engine.

No argparse, no printing of its own (``say`` hears the progress), no SSH of its own: it drives
each droplet's host agent through a :class:`RollTransport` (``ops/roll_ssh.py`` in production;
the tests run the agents locally). Per droplet, in the request's order:

1. ``drain`` (the droplet's load balancer check answers 503), wait :attr:`RollTimings.drain_wait`
   (``contract.fleet.drain_wait_seconds``: the load balancer has taken it out);
2. the step (``switch-staged RELEASE`` for a roll, ``rollback`` for a rollback) behind the
   agent's own health gate; the migrations ran ONCE, on the first droplet, before the roll;
3. ``undrain``, wait :attr:`RollTimings.rejoin_wait` and check ``lb-health`` (serving, 200).

A failure stops the roll: the failing droplet's agent already put its previous release back (its
exit code says whether it could), so it is only undrained; every droplet already switched goes
back to the release it served before, in reverse order, drained while it switches. A droplet that
cannot be reached is left alone (nothing is known of it) and named. The result says what
happened; the CLI turns a failure into a non-zero exit, so ``pulumi up`` fails.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from bankflow_infra.contract.fleet import drain_wait_seconds, rejoin_wait_seconds
from bankflow_infra.contract.roll import RollTarget


@dataclass(frozen=True)
class AgentAnswer:
    code: int
    out: str
    err: str


class TargetUnreachable(Exception):
    """The droplet could not be reached (or the connection broke): what ran there is unknown."""


class RollTransport(Protocol):
    def agent(self, target: RollTarget, args: Sequence[str]) -> AgentAnswer:
        """Run ``bankflow-agent ARGS`` on ``target``; :class:`TargetUnreachable` when it could not."""
        ...


@dataclass(frozen=True)
class RollTimings:
    """The load balancer's timings as waits: the contract's by default, shorter in tests whose
    load balancer checks faster."""

    drain_wait: float = float(drain_wait_seconds())
    rejoin_wait: float = float(rejoin_wait_seconds())
    rejoin_checks: int = 3  # lb-health attempts after the rejoin wait, one rejoin_wait/3 apart


@dataclass(frozen=True)
class RollStep:
    """What each droplet does between drain and undrain."""

    action: str  # "roll" or "rollback", for messages
    args: tuple[str, ...]  # the agent's arguments
    release: str | None  # the release every droplet ends on (None: each its own previous)
    migrate: bool  # run `migrate --release` once on the first droplet before the first switch


def roll_step(release: str) -> RollStep:
    return RollStep("roll", ("switch-staged", release), release, True)


def rollback_step(release: str | None) -> RollStep:
    return RollStep("rollback", ("rollback", *([release] if release else [])), release, False)


@dataclass
class RollResult:
    action: str
    switched: list[str] = field(default_factory=list)  # droplets that took the step
    skipped: list[str] = field(default_factory=list)  # already on the release
    reverted: list[str] = field(default_factory=list)  # switched, then put back
    failure: str | None = None  # what stopped the roll (None: done)
    problems: list[str] = field(default_factory=list)  # what could not be put back: look now

    @property
    def ok(self) -> bool:
        return self.failure is None


class _Stop(Exception):
    """The roll stops here; ``switched`` says whether the current droplet took the step."""

    def __init__(self, message: str, switched: bool = False) -> None:
        super().__init__(message)
        self.switched = switched


@dataclass
class _Roll:
    transport: RollTransport
    step: RollStep
    timings: RollTimings
    say: Callable[[str], None]
    sleep: Callable[[float], None]
    before: dict[str, str | None] = field(default_factory=dict)  # droplet -> release it served

    def run(self, target: RollTarget, args: Sequence[str], what: str) -> AgentAnswer:
        try:
            answer = self.transport.agent(target, args)
        except TargetUnreachable as exc:
            raise _Stop(f"{target.name}: {what}: unreachable: {exc}") from None
        return answer

    def must(self, target: RollTarget, args: Sequence[str], what: str, switched: bool = False) -> None:
        answer = self.run(target, args, what)
        if answer.code != 0:
            raise _Stop(f"{target.name}: {what} failed (exit {answer.code}): {_last_line(answer)}", switched)

    def current(self, target: RollTarget) -> str | None:
        """The release ``target`` serves now (None: nothing yet), from ``status --json``."""
        answer = self.run(target, ["status", "--json"], "status")
        try:
            current = json.loads(answer.out)["current"] if answer.code == 0 else False
        except (ValueError, TypeError, KeyError):
            current = False
        if current is not None and not isinstance(current, str):
            detail = f"exit {answer.code}: {_last_line(answer)}"
            raise _Stop(f"{target.name}: status: unexpected answer ({detail})")
        return current

    def rejoin(self, target: RollTarget, switched: bool) -> None:
        """Undrain, wait for the load balancer, check it would pass the droplet."""
        self.must(target, ["undrain"], "undrain", switched)
        self.sleep(self.timings.rejoin_wait)
        for attempt in range(self.timings.rejoin_checks):
            answer = self.run(target, ["lb-health"], "lb-health")
            if answer.code == 0:
                return
            if attempt + 1 < self.timings.rejoin_checks:
                self.sleep(self.timings.rejoin_wait / 3)
        raise _Stop(f"{target.name}: not back in rotation: {_last_line(answer)}", switched)

    def one(self, target: RollTarget) -> None:
        if self.before.get(target.name) is None:
            # a new droplet: nothing serves there, so the load balancer sends it nothing yet
            self.say(f"{self.step.action} {target.name}: serves nothing yet: its first release")
        else:
            self.say(f"{self.step.action} {target.name}: drain, wait {self.timings.drain_wait:g}s")
            self.must(target, ["drain"], "drain")
            self.sleep(self.timings.drain_wait)
        self.say(f"{self.step.action} {target.name}: {' '.join(self.step.args)}")
        answer = self.run(target, self.step.args, self.step.args[0])
        if answer.code != 0:
            # the agent put its previous release back itself (exit 1) or says it could not (4)
            detail = f"{self.step.args[0]} failed (exit {answer.code}): {_last_line(answer)}"
            try:
                self.rejoin(target, switched=False)
            except _Stop as exc:
                detail += f"; and it could not rejoin: {exc}"
            raise _Stop(f"{target.name}: {detail}")
        self.say(f"{self.step.action} {target.name}: undrain, wait {self.timings.rejoin_wait:g}s, lb-health")
        self.rejoin(target, switched=True)

    def put_back(self, target: RollTarget) -> str | None:
        """The release ``target`` served before the roll, drained while it switches; a problem."""
        previous = self.before.get(target.name)
        if previous is None:
            # nothing to go back to: out of rotation, so visitors see one release only
            try:
                self.must(target, ["drain"], "drain")
            except _Stop as exc:
                return f"{target.name}: served nothing before and could not be drained: {exc}"
            return f"{target.name}: served nothing before: left drained on the new release"
        self.say(f"revert {target.name}: drain, rollback {previous}, undrain")
        try:
            self.must(target, ["drain"], "drain")
            self.sleep(self.timings.drain_wait)
            self.must(target, ["rollback", previous], f"rollback {previous}")
            self.rejoin(target, switched=False)
        except _Stop as exc:
            return str(exc)
        return None


def _last_line(answer: AgentAnswer) -> str:
    lines = [line for line in (answer.err or answer.out).strip().splitlines() if line.strip()]
    return lines[-1][-500:] if lines else "(no output)"


def roll(
    targets: Sequence[RollTarget],
    step: RollStep,
    transport: RollTransport,
    *,
    timings: RollTimings | None = None,
    say: Callable[[str], None] = lambda _text: None,
    sleep: Callable[[float], None] | None = None,
) -> RollResult:
    """Take ``step`` on every droplet in order (see the module docstring); never raises for a
    droplet's failure: the result names it, and what was put back. ``sleep``: time.sleep."""
    state = _Roll(transport, step, timings or RollTimings(), say, sleep or time.sleep)
    result = RollResult(step.action)
    try:
        for target in targets:  # every droplet answers before anything changes
            state.before[target.name] = state.current(target)
    except _Stop as exc:
        result.failure = f"before any change: {exc}"
        return result
    pending = [t for t in targets if step.release is None or state.before[t.name] != step.release]
    result.skipped = [t.name for t in targets if t not in pending]
    switched: list[RollTarget] = []
    try:
        if pending and step.migrate and step.release is not None:
            say(f"migrate {step.release}: once, on {pending[0].name}, before the roll")
            state.must(pending[0], ["migrate", "--release", step.release], "migrate")
        for target in pending:
            try:
                state.one(target)
            except _Stop as exc:
                if exc.switched:
                    switched.append(target)
                raise
            switched.append(target)
    except _Stop as exc:
        result.failure = str(exc)
        result.switched = [t.name for t in switched]
        for target in reversed(switched):
            problem = state.put_back(target)
            if problem is None:
                result.reverted.append(target.name)
            else:
                result.problems.append(problem)
        return result
    result.switched = [t.name for t in switched]
    return result


def summary(result: RollResult) -> str:
    """One paragraph for the operator (and for pulumi's error when the roll fails)."""
    if result.ok:
        done = ", ".join(result.switched) or "none"
        skipped = f"; already there: {', '.join(result.skipped)}" if result.skipped else ""
        return f"{result.action}: done; switched: {done}{skipped}"
    text = f"{result.action}: FAILED: {result.failure}"
    if result.switched:
        text += f"; switched then put back: {', '.join(result.reverted) or 'none'}"
    if result.problems:
        text += "; ATTENTION, not put back: " + "; ".join(result.problems)
    return text
