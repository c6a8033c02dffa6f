"""Waking the parts that wait for work: here, or on every node through a notice."""

from cti.wakes import SMS, TOKENS, Wakes


def test_one_node_wakes_its_own_parts() -> None:
    woken: list[str] = []
    wakes = Wakes()
    wakes.on(SMS, lambda: woken.append("sms"))
    wakes.on(TOKENS, lambda: woken.append("tokens"))
    wakes(SMS)
    assert woken == ["sms"]


def test_a_node_of_several_sends_a_notice_and_wakes_itself_when_it_cannot() -> None:
    woken: list[str] = []
    sent: list[str] = []
    reachable = True

    def broadcast(kind: str) -> bool:
        if reachable:
            sent.append(kind)
        return reachable

    wakes = Wakes()
    wakes.on(SMS, lambda: woken.append("sms"))
    wakes.broadcast = broadcast
    wakes(SMS)
    assert (sent, woken) == (["sms"], [])  # the notice comes back to this node too
    reachable = False
    wakes(SMS)
    assert (sent, woken) == (["sms"], ["sms"])  # NATS away: at least this node's outbox
