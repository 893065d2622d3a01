"""G1's best-effort probe: does the RKE2 supervisor port of the initial master answer?"""

from __future__ import annotations

import socket

from rke2_manager.config import Settings
from rke2_manager.guardrails import ProbeResult
from rke2_manager.jobs.create import Prober
from rke2_manager.netpolicy import AddressNotAllowed, check_allowed


def make_prober(settings: Settings) -> Prober:
    """A probe that opens a TCP connection to ``<address>:<supervisor_port>`` with a timeout.

    It never connects outside ``RKE2M_ALLOWED_NETWORKS``; such a target counts as not answering.
    """
    port, timeout = settings.supervisor_port, settings.probe_timeout

    def probe(address: str) -> ProbeResult:
        try:
            check_allowed(address, settings.allowed_networks)
            with socket.create_connection((address, port), timeout=timeout):
                return ProbeResult(address, ok=True, port=port)
        except AddressNotAllowed as exc:
            return ProbeResult(address, ok=False, error=f"not probed: {exc}", port=port)
        except TimeoutError:
            return ProbeResult(address, ok=False, error=f"no answer within {timeout:g}s", port=port)
        except OSError as exc:
            return ProbeResult(address, ok=False, error=exc.strerror or str(exc), port=port)

    return probe
