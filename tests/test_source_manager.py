"""SourceManager: start new, restart changed, stop removed, survive a source that cannot start."""

from __future__ import annotations

from dataclasses import dataclass, field

from broker.event import Event
from sources.base import Emitter, Source, SourceStatus
from sources.manager import SourceManager, SourcePlan


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    value: str


class Recorder:
    """Lifecycle of every source and emitter the manager made, in order."""

    def __init__(self) -> None:
        self.log: list[str] = []

    def emitter_for(self, plan: SourcePlan) -> Emitter:
        self.log.append(f"emitter {plan.key[2]} {plan.sink_uri}")
        return NullEmitter()


class NullEmitter:
    async def emit(self, event: Event) -> bool:
        return True


@dataclass
class Dummy:
    name: str
    recorder: Recorder
    fail: bool = False
    running: bool = field(default=False)

    async def start(self) -> None:
        if self.fail:
            raise OSError("port in use")
        self.running = True
        self.recorder.log.append(f"start {self.name}")

    async def stop(self) -> None:
        self.running = False
        self.recorder.log.append(f"stop {self.name}")

    def status(self) -> SourceStatus:
        return SourceStatus(ready=self.running, extra={"name": self.name})


def plan(
    recorder: Recorder, name: str, value: str = "a", sink: str = "http://s/", fail: bool = False
) -> SourcePlan:
    def build(emitter: Emitter) -> Source:
        return Dummy(f"{name}:{value}", recorder, fail=fail)

    return SourcePlan(key=("Dummy", "default", name), spec=Config(value=value), sink_uri=sink, build=build)


def plans(*items: SourcePlan) -> dict[tuple[str, str, str], SourcePlan]:
    return {p.key: p for p in items}


async def test_apply_starts_restarts_and_stops() -> None:
    recorder = Recorder()
    manager = SourceManager(emitter_for=recorder.emitter_for)
    await manager.apply(plans(plan(recorder, "one"), plan(recorder, "two"), plan(recorder, "three")))
    assert sorted(recorder.log) == sorted([
        "emitter one http://s/", "start one:a",
        "emitter two http://s/", "start two:a",
        "emitter three http://s/", "start three:a",
    ])  # fmt: skip
    recorder.log.clear()

    # one: unchanged (a fresh closure does not matter); two: new spec; three: new sink; four: new.
    await manager.apply(plans(
        plan(recorder, "one"),
        plan(recorder, "two", value="b"),
        plan(recorder, "three", sink="http://other/"),
        plan(recorder, "four"),
    ))  # fmt: skip
    assert sorted(recorder.log) == sorted([
        "stop two:a", "emitter two http://s/", "start two:b",
        "stop three:a", "emitter three http://other/", "start three:a",
        "emitter four http://s/", "start four:a",
    ])  # fmt: skip
    assert recorder.log.index("stop two:a") < recorder.log.index("start two:b")
    recorder.log.clear()

    await manager.apply(plans(plan(recorder, "two", value="b")))
    assert sorted(recorder.log) == ["stop four:a", "stop one:a", "stop three:a"]
    assert manager.keys() == [("Dummy", "default", "two")]
    assert manager.status(("Dummy", "default", "one")) is None
    status = manager.status(("Dummy", "default", "two"))
    assert status is not None and status.ready and status.extra == {"name": "two:b"}

    recorder.log.clear()
    await manager.stop()
    assert recorder.log == ["stop two:b"]
    assert manager.keys() == []


async def test_a_source_that_cannot_start_does_not_stop_the_others() -> None:
    recorder = Recorder()
    manager = SourceManager(emitter_for=recorder.emitter_for)
    await manager.apply(plans(plan(recorder, "bad", fail=True), plan(recorder, "good")))
    bad = manager.status(("Dummy", "default", "bad"))
    assert bad == SourceStatus(ready=False, reason="StartFailed", message="OSError: port in use")
    good = manager.status(("Dummy", "default", "good"))
    assert good is not None and good.ready

    # The same failing plan is not retried; a changed one is.
    recorder.log.clear()
    await manager.apply(plans(plan(recorder, "bad", fail=True), plan(recorder, "good")))
    assert recorder.log == []
    await manager.apply(plans(plan(recorder, "bad", value="fixed"), plan(recorder, "good")))
    assert recorder.log == ["emitter bad http://s/", "start bad:fixed"]
    await manager.stop()
