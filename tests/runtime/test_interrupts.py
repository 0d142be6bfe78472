"""Ctrl-C and SIGTERM during a held section (the demo's write-and-count of a frame) wait for its end."""

from __future__ import annotations

import os
import signal

import pytest

from edgeseg.runtime.interrupts import HeldInterrupts


@pytest.mark.parametrize(("signum", "reason"), [(signal.SIGINT, "Ctrl-C"), (signal.SIGTERM, "SIGTERM")])
def test_a_signal_inside_a_held_section_is_raised_when_it_ends(signum, reason):
    interrupts, done = HeldInterrupts(), []
    with interrupts.installed(), pytest.raises(KeyboardInterrupt) as caught:
        with interrupts.held():
            os.kill(os.getpid(), signum)  # the handler runs here, at the next bytecode
            done.append("written")
            done.append("counted")
        done.append("after the section")
    assert done == ["written", "counted"] and caught.value.args == (reason,)


def test_outside_a_held_section_a_signal_interrupts_at_once_and_handlers_are_restored():
    interrupts, done = HeldInterrupts(), []
    before = signal.getsignal(signal.SIGTERM)
    with interrupts.installed(), pytest.raises(KeyboardInterrupt) as caught:
        os.kill(os.getpid(), signal.SIGTERM)
        done.append("not reached")
    assert done == [] and caught.value.args == ("SIGTERM",)
    assert signal.getsignal(signal.SIGTERM) is before and signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_error_in_the_section_goes_instead_of_the_pending_interrupt():
    interrupts = HeldInterrupts()
    with interrupts.installed():
        with pytest.raises(OSError, match="disk full"), interrupts.held():
            os.kill(os.getpid(), signal.SIGINT)
            raise OSError("disk full")
        with interrupts.held():  # nothing stale is raised by the next section
            pass
